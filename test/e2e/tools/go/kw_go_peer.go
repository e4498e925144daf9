// kw_go_peer: a TLS 1.3 peer built on Go's own crypto/tls (not OpenSSL, not BoringSSL),
// for the interop tests of enrolled processes. It holds an X.509-SVID, verifies the
// other end's chain against a bundle (SPIFFE IDs are URI SANs: no host name to check),
// and runs a full-duplex transfer: sends FILE while writing what it receives to OUT.
//
//	kw_go_peer server|client ADDR CERT KEY CA FILE OUT
//
// After the last byte it half-closes the TCP stream, without close_notify, as kTLS ends do.
// Prints "tls: VERSION SUITE peer URI", "sent N bytes", "received N bytes"; exits 1 on error.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kw_go_peer: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 8 || (os.Args[1] != "server" && os.Args[1] != "client") {
		fail("usage: kw_go_peer server|client ADDR CERT KEY CA FILE OUT")
	}
	role, addr, certFile, keyFile, caFile, sendFile, recvFile := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6], os.Args[7]
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		fail("loading %s: %v", certFile, err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		fail("reading %s: %v", caFile, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		fail("no certificate in %s", caFile)
	}
	// The chain, verified by hand: Go's name check wants a DNS name an SVID does not carry.
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("no certificate from the peer")
		}
		certs := make([]*x509.Certificate, len(raw))
		for i, r := range raw {
			c, err := x509.ParseCertificate(r)
			if err != nil {
				return err
			}
			certs[i] = c
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		return err
	}
	cfg := &tls.Config{
		MinVersion:            tls.VersionTLS13,
		Certificates:          []tls.Certificate{cert},
		InsecureSkipVerify:    true, // replaced by verify, which checks the whole chain
		VerifyPeerCertificate: verify,
		ClientAuth:            tls.RequireAnyClientCert,
	}

	var raw net.Conn
	if role == "server" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fail("listen %s: %v", addr, err)
		}
		fmt.Println("listening")
		raw, err = ln.Accept()
		if err != nil {
			fail("accept: %v", err)
		}
		ln.Close()
	} else {
		raw, err = net.DialTimeout("tcp", addr, 30*time.Second)
		if err != nil {
			fail("connect %s: %v", addr, err)
		}
	}
	var conn *tls.Conn
	if role == "server" {
		conn = tls.Server(raw, cfg)
	} else {
		conn = tls.Client(raw, cfg)
	}
	conn.SetDeadline(time.Now().Add(300 * time.Second))
	if err := conn.Handshake(); err != nil {
		fail("handshake: %v", err)
	}
	st := conn.ConnectionState()
	peer := "?"
	if len(st.PeerCertificates) > 0 && len(st.PeerCertificates[0].URIs) > 0 {
		peer = st.PeerCertificates[0].URIs[0].String()
	}
	version := fmt.Sprintf("0x%04x", st.Version)
	if st.Version == tls.VersionTLS13 {
		version = "TLSv1.3"
	}
	fmt.Printf("tls: %s %s peer %s\n", version, tls.CipherSuiteName(st.CipherSuite), peer)

	out, err := os.Create(recvFile)
	if err != nil {
		fail("creating %s: %v", recvFile, err)
	}
	received := make(chan error, 1)
	var got int64
	go func() {
		n, err := io.Copy(out, conn)
		got = n
		// The other end half-closes without close_notify: an unexpected EOF is its end.
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = nil
		}
		received <- err
	}()
	in, err := os.Open(sendFile)
	if err != nil {
		fail("opening %s: %v", sendFile, err)
	}
	sent, err := io.Copy(conn, in)
	if err != nil {
		fail("sending: %v", err)
	}
	fmt.Printf("sent %d bytes\n", sent)
	if err := raw.(*net.TCPConn).CloseWrite(); err != nil {
		fail("half-close: %v", err)
	}
	if err := <-received; err != nil {
		fail("receiving after %d bytes: %v", got, err)
	}
	if err := out.Close(); err != nil {
		fail("writing %s: %v", recvFile, err)
	}
	fmt.Printf("received %d bytes\n", got)
}
