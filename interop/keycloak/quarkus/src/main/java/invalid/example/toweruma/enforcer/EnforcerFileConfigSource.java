package invalid.example.toweruma.enforcer;

import java.util.Map;
import java.util.Set;

import org.eclipse.microprofile.config.spi.ConfigSource;

/**
 * Quarkus OIDC's settings from the shared file: the realm's issuer, the client and its secret.
 * Nothing when no file is configured (the build).
 */
public final class EnforcerFileConfigSource implements ConfigSource {

    private final Map<String, String> properties;

    public EnforcerFileConfigSource() {
        if (EnforcerFile.location() == null) {
            properties = Map.of();
        } else {
            EnforcerFile file = EnforcerFile.load();
            properties = Map.of(
                    "quarkus.oidc.auth-server-url", file.issuer(),
                    "quarkus.oidc.client-id", file.resource,
                    "quarkus.oidc.credentials.secret", file.secret);
        }
    }

    @Override
    public Map<String, String> getProperties() {
        return properties;
    }

    @Override
    public Set<String> getPropertyNames() {
        return properties.keySet();
    }

    @Override
    public String getValue(String name) {
        return properties.get(name);
    }

    @Override
    public String getName() {
        return "enforcer-file";
    }

    @Override
    public int getOrdinal() {
        // Above application.properties (250), below system properties and the environment.
        return 275;
    }
}
