package transport

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// value reads a counter.
func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// series counts the series of the metric name in reg.
func series(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return len(f.GetMetric())
		}
	}
	return 0
}

func TestTransport_CountsWhatItSendsAndReceives(t *testing.T) {
	checkNoLeaks(t)
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	a := newMember(t, 1, "", func(c *Config) { c.Metrics = regA })
	b := newMember(t, 2, "", func(c *Config) { c.Metrics = regB })
	connect(a, b)

	const n = 500
	sendAll(a.Transport, 1, 2, n)
	b.raft.waitForMessages(t, 1, n)

	m := a.metrics
	// a counts a frame once its write returned, which may be after b
	// delivered it.
	b.raft.waitUntil(t, "a counts every message", func() bool { return value(t, m.sentMsgs.WithLabelValues("2")) == n })
	msgs := value(t, m.sentMsgs.WithLabelValues("2"))
	frames := value(t, m.sentFrames.WithLabelValues("2"))
	sent := value(t, m.sentBytes.WithLabelValues("2"))
	if msgs != n || frames < 1 || frames > n || sent < n*frameHeaderLen {
		t.Fatalf("a counted %v messages in %v frames, %v bytes; sent %d messages", msgs, frames, sent, n)
	}
	// b counts a frame before delivering its messages.
	if got := value(t, b.metrics.receivedBytes.WithLabelValues("1")); got != sent {
		t.Fatalf("b received %v bytes from a, a sent %v", got, sent)
	}
	for _, name := range []string{"etcd_network_peer_sent_bytes_total", "edgekv_network_peer_sent_frames_total", "edgekv_network_peer_sent_messages_total"} {
		if series(t, regA, name) != 1 {
			t.Fatalf("%s is not registered once, with one peer", name)
		}
	}
	if series(t, regB, "etcd_network_peer_received_bytes_total") != 1 {
		t.Fatal("etcd_network_peer_received_bytes_total is not registered")
	}

	a.RemovePeer(2)
	if c := series(t, regA, "etcd_network_peer_sent_bytes_total"); c != 0 {
		t.Fatalf("a removed peer keeps %d series", c)
	}
}
