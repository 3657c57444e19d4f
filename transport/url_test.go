package transport

import (
	"errors"
	"testing"
)

func TestHostPort_AcceptsHTTPAndHTTPSPeerURLs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http://127.0.0.1:2380", "127.0.0.1:2380"},
		{"https://10.0.0.5:12380", "10.0.0.5:12380"},
		{"http://node-1.local:2380", "node-1.local:2380"},
		{"http://node-1.local:2380/", "node-1.local:2380"},
		{"HTTPS://[::1]:2380", "[::1]:2380"},
		{"http://[fe80::1%25eth0]:2380", "[fe80::1%eth0]:2380"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := HostPort(tc.in)
			if err != nil || got != tc.want {
				t.Fatalf("HostPort(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestHostPort_RejectsEverythingElse(t *testing.T) {
	for _, in := range []string{
		"",
		"127.0.0.1:2380",
		"unix://socket:2380",
		"quic://127.0.0.1:2380",
		"http://127.0.0.1",
		"http://:2380",
		"http://127.0.0.1:0",
		"http://127.0.0.1:65536",
		"http://127.0.0.1:port",
		"http://127.0.0.1:2380/raft",
		"http://user@127.0.0.1:2380",
		"http://127.0.0.1:2380?x=1",
		"http://127.0.0.1:2380#f",
		"http:127.0.0.1:2380",
		"http://[::1:2380",
	} {
		t.Run(in, func(t *testing.T) {
			got, err := HostPort(in)
			if !errors.Is(err, ErrBadPeerURL) {
				t.Fatalf("HostPort(%q) = %q, %v; want ErrBadPeerURL", in, got, err)
			}
			t.Log(err)
		})
	}
}
