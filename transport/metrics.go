package transport

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the transport's Prometheus counters of the message streams
// (snapshot streams are not counted), labelled with the peer's ID in hex
// as etcd labels them. The byte counters have etcd's names, so that its
// dashboards show peer traffic; frames and messages are edgekv's own (one
// frame is one stream write, usually one UDP packet, holding every message
// that was queued for the peer).
type metrics struct {
	sentBytes, sentFrames, sentMsgs *prometheus.CounterVec
	receivedBytes                   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(namespace, name, label, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "network", Name: name, Help: help,
		}, []string{label})
	}
	m := &metrics{
		sentBytes:     counter("etcd", "peer_sent_bytes_total", "To", "The total number of bytes sent to peers."),
		receivedBytes: counter("etcd", "peer_received_bytes_total", "From", "The total number of bytes received from peers."),
		sentFrames:    counter("edgekv", "peer_sent_frames_total", "To", "The total number of message frames (stream writes) sent to peers."),
		sentMsgs:      counter("edgekv", "peer_sent_messages_total", "To", "The total number of Raft messages sent to peers."),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.sentBytes, m.receivedBytes, m.sentFrames, m.sentMsgs} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("%w: registering metrics: %v", ErrInvalidConfig, err)
		}
	}
	return m, nil
}

// peerCounters are one peer's sending counters, bound to its label once.
type peerCounters struct {
	bytes, frames, msgs prometheus.Counter
}

func (m *metrics) forPeer(id uint64) peerCounters {
	l := peerLabel(id)
	return peerCounters{
		bytes:  m.sentBytes.WithLabelValues(l),
		frames: m.sentFrames.WithLabelValues(l),
		msgs:   m.sentMsgs.WithLabelValues(l),
	}
}

// forget drops a removed peer's series.
func (m *metrics) forget(id uint64) {
	l := peerLabel(id)
	m.sentBytes.DeleteLabelValues(l)
	m.sentFrames.DeleteLabelValues(l)
	m.sentMsgs.DeleteLabelValues(l)
	m.receivedBytes.DeleteLabelValues(l)
}

func peerLabel(id uint64) string { return fmt.Sprintf("%x", id) }
