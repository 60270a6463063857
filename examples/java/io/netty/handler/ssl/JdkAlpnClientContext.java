// TLS with ALPN on the JDK's own SSLEngine, for Debian's netty 4.1.48.
//
// gRPC over TLS needs ALPN to agree on "h2". Upstream netty does it on the JDK's SSLEngine
// (Java 9+) with JdkAlpnApplicationProtocolNegotiator; Debian's libnetty-java drops that
// class (it also carried the Jetty ALPN agent), so grpc-java's GrpcSslContexts, and with it
// TlsChannelCredentials, fail with "JDK provider does not support ALPN protocol" unless
// netty-tcnative's OpenSSL is there — and Debian's libnetty-tcnative-jni installs its
// library as libnetty-tcnative.so, a name netty never loads. Netty's Java 9 ALPN engine
// is still in the jar, though, only package-private: this class, in netty's package,
// hands it out again. On a netty with JDK ALPN intact, use
// GrpcSslContexts.forClient().trustManager(file).build() (or TlsChannelCredentials).
package io.netty.handler.ssl;

import java.io.File;
import javax.net.ssl.SSLException;

/** Client SslContexts whose JDK engines negotiate "h2" by ALPN, as gRPC requires. */
public final class JdkAlpnClientContext {
  private JdkAlpnClientContext() {}

  /**
   * A client context trusting the PEM certificates in {@code trustCertCollection}, with the
   * JDK's default protocols and ciphers, that fails the handshake unless the server picks
   * "h2".
   */
  @SuppressWarnings("deprecation") // the negotiator API: all that Debian's netty left
  public static SslContext forClient(File trustCertCollection) throws SSLException {
    JdkApplicationProtocolNegotiator alpn =
        new JdkBaseApplicationProtocolNegotiator(
            (engine, negotiator, isServer) -> new Java9SslEngine(engine, negotiator, isServer),
            JdkBaseApplicationProtocolNegotiator.FAIL_SELECTOR_FACTORY,
            JdkBaseApplicationProtocolNegotiator.FAIL_SELECTION_LISTENER_FACTORY,
            "h2");
    return new JdkSslClientContext(
        trustCertCollection, null, null, IdentityCipherSuiteFilter.INSTANCE, alpn, 0, 0);
  }
}
