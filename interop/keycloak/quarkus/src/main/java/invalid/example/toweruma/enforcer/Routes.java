package invalid.example.toweruma.enforcer;

import java.net.URI;
import java.util.Set;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;

import io.quarkus.keycloak.pep.PolicyEnforcerResolver;
import io.quarkus.runtime.StartupEvent;
import io.vertx.core.MultiMap;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpClient;
import io.vertx.core.http.HttpClientOptions;
import io.vertx.core.http.HttpServerRequest;
import io.vertx.core.http.HttpServerResponse;
import io.vertx.core.http.PoolOptions;
import io.vertx.core.http.RequestOptions;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;

/**
 * One catch-all route behind Quarkus's security (OIDC bearer tokens, then Keycloak's policy
 * enforcer). With {@code UPSTREAM_URL} (or the system property {@code upstream.url}) it forwards
 * each request that passed to that upstream, streaming, and relays the answer; without it it
 * answers {@code 200} with {@code {"method": …, "path": …}}.
 */
@ApplicationScoped
public class Routes {

    /** Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded. */
    private static final Set<String> HOP = Set.of("connection", "keep-alive", "proxy-connection",
            "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade");

    void init(@Observes Router router, Vertx vertx) {
        String upstream = System.getenv("UPSTREAM_URL");
        if (upstream == null || upstream.isEmpty()) {
            upstream = System.getProperty("upstream.url");
        }
        if (upstream == null || upstream.isEmpty()) {
            router.route().handler(Routes::echo);
            return;
        }
        URI uri = URI.create(upstream);
        String host = uri.getHost();
        int port = uri.getPort() != -1 ? uri.getPort() : ("https".equals(uri.getScheme()) ? 443 : 80);
        String prefix = uri.getRawPath() == null ? "" : uri.getRawPath().replaceAll("/+$", "");
        HttpClient client = vertx.createHttpClient(
                new HttpClientOptions().setKeepAlive(true).setSsl("https".equals(uri.getScheme())),
                new PoolOptions().setHttp1MaxSize(256));
        router.route().handler(ctx -> forward(ctx, client, host, port, prefix));
    }

    /** Builds the enforcer at start-up, so that "started" means ready to decide. */
    void start(@Observes StartupEvent event, PolicyEnforcerResolver resolver) {
        resolver.getReadTimeout();
    }

    private static void echo(RoutingContext ctx) {
        HttpServerRequest req = ctx.request();
        ctx.response()
                .putHeader("content-type", "application/json")
                .end(new JsonObject().put("method", req.method().name()).put("path", req.path()).encode());
    }

    private static void forward(RoutingContext ctx, HttpClient client, String host, int port, String prefix) {
        HttpServerRequest req = ctx.request();
        HttpServerResponse resp = ctx.response();
        req.pause();
        RequestOptions options = new RequestOptions()
                .setMethod(req.method())
                .setHost(host)
                .setPort(port)
                .setURI(prefix + req.uri());
        client.request(options).onFailure(e -> badGateway(req, resp)).onSuccess(out -> {
            copy(req.headers(), out.headers());
            // A body only when the request has one: a GET goes out without one, not chunked.
            boolean body = req.headers().contains("content-length") || req.headers().contains("transfer-encoding");
            (body ? out.send(req) : out.send()).onFailure(e -> badGateway(req, resp)).onSuccess(in -> {
                resp.setStatusCode(in.statusCode());
                copy(in.headers(), resp.headers());
                if (!in.headers().contains("content-length")) {
                    resp.setChunked(true);
                }
                resp.send(in);
            });
        });
    }

    private static void copy(MultiMap from, MultiMap to) {
        for (var entry : from) {
            String name = entry.getKey().toLowerCase();
            if (!HOP.contains(name) && !name.equals("host")) {
                to.add(entry.getKey(), entry.getValue());
            }
        }
    }

    private static void badGateway(HttpServerRequest req, HttpServerResponse resp) {
        if (!resp.headWritten()) {
            resp.setStatusCode(502).end();
        } else {
            resp.reset();
        }
    }
}
