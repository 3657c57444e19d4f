package framework

import (
	"fmt"
	"net"
)

// FreePorts returns n distinct ports on 127.0.0.1 that are free for both TCP
// and UDP at the time of the call (edgekv's peer port is QUIC over UDP, etcd's
// is TCP; the client port is TCP for both). All probes are held open until n
// are found, so the ports are distinct; another process may still take one
// before the server binds it, which on loopback in a test run is rare.
func FreePorts(n int) ([]int, error) {
	var (
		ports   []int
		closers []func() error
	)
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	for attempts := 0; len(ports) < n; attempts++ {
		if attempts > 100*n {
			return nil, fmt.Errorf("found only %d of %d free ports", len(ports), n)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("probe tcp port: %w", err)
		}
		closers = append(closers, l.Close)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // taken for UDP; keep the TCP probe open so it is not offered again
		}
		closers = append(closers, u.Close)
		ports = append(ports, port)
	}
	return ports, nil
}
