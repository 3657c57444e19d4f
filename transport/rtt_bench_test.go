package transport

import (
	"context"
	"io"
	"net"
	"testing"

	"github.com/quic-go/quic-go"
)

// BenchmarkRoundTrip measures one 300-byte message and its echo on
// loopback: over a QUIC stream with the transport's TLS and QUIC settings,
// and over TCP (what etcd's peers use), for comparing what a Raft round
// trip costs in the transport alone. ns/op is the round trip.
//
//	go test ./transport -run '^$' -bench RoundTrip -benchtime 20000x
func BenchmarkRoundTrip(b *testing.B) {
	msg := make([]byte, 300)
	pingPong := func(b *testing.B, c io.ReadWriter) {
		buf := make([]byte, len(msg))
		b.ResetTimer()
		for range b.N {
			if _, err := c.Write(msg); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
		}
	}
	echo := func(c io.ReadWriter) {
		buf := make([]byte, len(msg))
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}
	b.Run("quic", func(b *testing.B) {
		cert, err := selfSignedCert()
		if err != nil {
			b.Fatal(err)
		}
		conf := &quic.Config{MaxIncomingStreams: 1}
		ln, err := quic.ListenAddr("127.0.0.1:0", serverTLS(cert), conf)
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		ctx := context.Background()
		go func() {
			conn, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			str, err := conn.AcceptStream(ctx)
			if err != nil {
				return
			}
			echo(str)
		}()
		conn, err := quic.DialAddr(ctx, ln.Addr().String(), clientTLS(), dialQUICConfig())
		if err != nil {
			b.Fatal(err)
		}
		defer conn.CloseWithError(0, "")
		str, err := conn.OpenStreamSync(ctx)
		if err != nil {
			b.Fatal(err)
		}
		pingPong(b, str)
	})
	b.Run("tcp", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			echo(c)
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		pingPong(b, c)
	})
}
