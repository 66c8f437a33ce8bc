package invalid.example.toweruma.enforcer;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import org.keycloak.representations.adapters.config.PolicyEnforcerConfig;

/**
 * The one configuration file this service shares with uma-proxy: a Keycloak adapter
 * {@code keycloak.json} with its {@code policy-enforcer} section, or a standalone
 * {@code policy-enforcer.json} (the same keys at the top). Its path comes from the environment
 * variable {@code ENFORCER_CONFIG} (or the system property {@code enforcer.config}).
 */
final class EnforcerFile {

    private static final ObjectMapper MAPPER = new ObjectMapper()
            .configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);

    final String realm;
    final String authServerUrl;
    final String resource;
    final String secret;
    final boolean bearerOnly;
    final PolicyEnforcerConfig enforcer;

    private EnforcerFile(JsonNode top) throws IOException {
        JsonNode section = top.has("policy-enforcer") ? top.get("policy-enforcer") : top;
        this.realm = text(top, section, "realm");
        this.authServerUrl = text(top, section, "auth-server-url").replaceAll("/+$", "");
        this.resource = text(top, section, "resource");
        JsonNode credentials = top.has("credentials") ? top.get("credentials") : section.path("credentials");
        this.secret = credentials.path("secret").asText();
        this.bearerOnly = top.path("bearer-only").asBoolean(false);
        // Keycloak's own reading of the section: every key the enforcer knows, as it knows it.
        this.enforcer = MAPPER.treeToValue(section, PolicyEnforcerConfig.class);
    }

    private static String text(JsonNode top, JsonNode section, String key) throws IOException {
        JsonNode value = top.has(key) ? top.get(key) : section.get(key);
        if (value == null || !value.isTextual()) {
            throw new IOException("the configuration has no `" + key + "`");
        }
        return value.asText();
    }

    /** The configured file's path, or null when none is configured (at build time). */
    static String location() {
        String path = System.getenv("ENFORCER_CONFIG");
        if (path == null || path.isEmpty()) {
            path = System.getProperty("enforcer.config");
        }
        return path == null || path.isEmpty() ? null : path;
    }

    static EnforcerFile load() {
        String path = location();
        if (path == null) {
            throw new IllegalStateException("set ENFORCER_CONFIG to a keycloak.json or policy-enforcer.json");
        }
        try {
            return new EnforcerFile(MAPPER.readTree(Files.readAllBytes(Path.of(path))));
        } catch (IOException e) {
            throw new IllegalStateException(path + ": " + e.getMessage(), e);
        }
    }

    /** The issuer: {@code {auth-server-url}/realms/{realm}}. */
    String issuer() {
        return authServerUrl + "/realms/" + realm;
    }

    Map<String, Object> credentials() {
        return Map.of("secret", secret);
    }
}
