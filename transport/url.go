package transport

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
)

// HostPort returns the UDP "host:port" of an etcd-style peer URL,
// "http://host:port" or "https://host:port". edgekv speaks QUIC on that
// host and port whichever scheme is given. Anything else (another scheme,
// a missing host or port, a path, query, fragment or user info) is an
// error wrapping ErrBadPeerURL.
func HostPort(peerURL string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w %q: %s", ErrBadPeerURL, peerURL, why)
	}
	u, err := url.Parse(peerURL)
	if err != nil {
		return bad(err.Error())
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		if u.Scheme == "" {
			return bad("want http://host:port or https://host:port")
		}
		return bad(fmt.Sprintf("unsupported scheme %q, want http or https", u.Scheme))
	}
	if u.Opaque != "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return bad("want only a scheme, a host and a port")
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return bad("want host:port after the scheme")
	}
	if host == "" {
		return bad("missing host")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return bad(fmt.Sprintf("bad port %q", port))
	}
	return net.JoinHostPort(host, port), nil
}
