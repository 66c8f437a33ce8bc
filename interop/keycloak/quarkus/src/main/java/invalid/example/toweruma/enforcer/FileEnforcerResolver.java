package invalid.example.toweruma.enforcer;

import jakarta.annotation.Priority;
import jakarta.enterprise.inject.Alternative;
import jakarta.inject.Singleton;

import org.keycloak.adapters.authorization.PolicyEnforcer;

import io.quarkus.keycloak.pep.PolicyEnforcerResolver;
import io.quarkus.oidc.OidcTenantConfig;
import io.smallrye.mutiny.Uni;
import io.vertx.ext.web.RoutingContext;

/**
 * Hands quarkus-keycloak-authorization a Keycloak {@link PolicyEnforcer} made from the shared
 * file as Keycloak itself reads it, in place of the one Quarkus makes from its
 * {@code quarkus.keycloak.policy-enforcer.*} properties: those have no
 * {@code user-managed-access}, no path-level {@code scopes} and no path {@code id}, so a
 * translation would change what is compared.
 */
@Alternative
@Priority(1)
@Singleton
public class FileEnforcerResolver implements PolicyEnforcerResolver {

    private final PolicyEnforcer enforcer;

    public FileEnforcerResolver() {
        EnforcerFile file = EnforcerFile.load();
        this.enforcer = PolicyEnforcer.builder()
                .authServerUrl(file.authServerUrl)
                .realm(file.realm)
                .clientId(file.resource)
                .credentials(file.credentials())
                .bearerOnly(file.bearerOnly)
                .enforcerConfig(file.enforcer)
                .build();
    }

    @Override
    public Uni<PolicyEnforcer> resolvePolicyEnforcer(RoutingContext routingContext, OidcTenantConfig tenantConfig) {
        return Uni.createFrom().item(enforcer);
    }

    @Override
    public long getReadTimeout() {
        return 60_000;
    }
}
