package listener

import (
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"

	_ "crypto/sha512" // SHA-384 and SHA-512 for tls-server-end-point
)

// Channel-binding types (RFC 5929 §4, RFC 9266).
const (
	cbExporter = "tls-exporter"
	cbEndpoint = "tls-server-end-point"

	exporterLabel = "EXPORTER-Channel-Binding"
	exporterLen   = 32
)

// endpointHash computes the tls-server-end-point binding of the server's
// certificate (RFC 5929 §4.1): its DER hashed with the hash of its
// signature algorithm, SHA-256 for MD5 and SHA-1. It is nil when the
// certificate served cannot be known in advance (several certificates, or
// one picked per connection) or the algorithm has no such rule (Ed25519):
// then tls-server-end-point is not offered.
func endpointHash(cfg *tls.Config) []byte {
	if cfg == nil || len(cfg.Certificates) != 1 || cfg.GetCertificate != nil || cfg.GetConfigForClient != nil {
		return nil
	}
	cert := cfg.Certificates[0]
	if len(cert.Certificate) == 0 {
		return nil
	}
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil
		}
	}
	var h crypto.Hash
	switch leaf.SignatureAlgorithm {
	case x509.MD5WithRSA, x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1,
		x509.SHA256WithRSA, x509.ECDSAWithSHA256, x509.SHA256WithRSAPSS:
		h = crypto.SHA256
	case x509.SHA384WithRSA, x509.ECDSAWithSHA384, x509.SHA384WithRSAPSS:
		h = crypto.SHA384
	case x509.SHA512WithRSA, x509.ECDSAWithSHA512, x509.SHA512WithRSAPSS:
		h = crypto.SHA512
	default:
		return nil
	}
	if h == crypto.SHA256 {
		sum := sha256.Sum256(cert.Certificate[0])
		return sum[:]
	}
	w := h.New()
	w.Write(cert.Certificate[0])
	return w.Sum(nil)
}

// tlsState is the connection's TLS state; ok is false before TLS.
func (n *negotiation) tlsState() (tls.ConnectionState, bool) {
	if n.sess == nil {
		return tls.ConnectionState{}, false
	}
	cs := n.sess.ConnectionState()
	return cs, cs.HandshakeComplete
}

// cbTypes lists the channel-binding types that can really be computed on
// this connection, best first: tls-exporter needs TLS 1.3 (RFC 9266 §3
// allows TLS 1.2 only with the extended master secret, which Go does not
// report), tls-server-end-point a certificate known in advance.
func (n *negotiation) cbTypes() []string {
	cs, ok := n.tlsState()
	if !ok {
		return nil
	}
	var out []string
	if cs.Version >= tls.VersionTLS13 {
		out = append(out, cbExporter)
	}
	if n.srv.endpoint != nil {
		out = append(out, cbEndpoint)
	}
	return out
}

// cbData returns the binding data of typ on this connection.
func (n *negotiation) cbData(typ string) ([]byte, bool) {
	cs, ok := n.tlsState()
	if !ok {
		return nil, false
	}
	switch typ {
	case cbExporter:
		if cs.Version < tls.VersionTLS13 {
			return nil, false
		}
		b, err := cs.ExportKeyingMaterial(exporterLabel, nil, exporterLen)
		if err != nil || len(b) == 0 {
			return nil, false
		}
		return b, true
	case cbEndpoint:
		if n.srv.endpoint == nil {
			return nil, false
		}
		return n.srv.endpoint, true
	}
	return nil, false
}

func (n *negotiation) hasCB(typ string) bool {
	for _, t := range n.cbTypes() {
		if t == typ {
			return true
		}
	}
	return false
}
