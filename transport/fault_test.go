package transport

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func TestParseFaultConfig(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want FaultConfig
	}{
		{"5ms-40ms,drop=0.05", FaultConfig{MinDelay: 5 * time.Millisecond, MaxDelay: 40 * time.Millisecond, Drop: 0.05}},
		{"20ms", FaultConfig{MinDelay: 20 * time.Millisecond, MaxDelay: 20 * time.Millisecond}},
		{"drop=0.1", FaultConfig{Drop: 0.1}},
		{" 0s-1s , seed=7 ", FaultConfig{MaxDelay: time.Second, Seed: 7}},
		{"", FaultConfig{}},
	} {
		got, err := ParseFaultConfig(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseFaultConfig(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"40ms-5ms", "-5ms", "5ms-", "drop=1", "drop=-0.1", "drop=NaN", "drop=x", "delay=5ms", "seed=-1", "fast"} {
		if c, err := ParseFaultConfig(bad); !errors.Is(err, ErrBadFaultConfig) {
			t.Errorf("ParseFaultConfig(%q) = %+v, %v; want ErrBadFaultConfig", bad, c, err)
		}
	}
}

// arrivals records what Faults passes on, and when.
type arrivals struct {
	mu   sync.Mutex
	msgs []*raftpb.Message
	at   []time.Time
}

func (a *arrivals) Send(msgs []*raftpb.Message) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, m := range msgs {
		a.msgs = append(a.msgs, m)
		a.at = append(a.at, now)
	}
}

func (a *arrivals) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.msgs)
}

// waitFor waits until n messages arrived.
func (a *arrivals) waitFor(tb testing.TB, n int) {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for a.count() < n {
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d messages arrived within %v", a.count(), n, waitTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newFaults(tb testing.TB, next interface{ Send([]*raftpb.Message) }, cfg FaultConfig) *Faults {
	tb.Helper()
	f, err := NewFaults(next, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(f.Close)
	return f
}

// indexes returns the Index of each message.
func indexes(msgs []*raftpb.Message) []uint64 {
	var out []uint64
	for _, m := range msgs {
		out = append(out, m.GetIndex())
	}
	return out
}

func TestFaults_DelaysEveryMessageWithinItsBoundsAndReordersThem(t *testing.T) {
	checkNoLeaks(t)
	const minDelay, maxDelay, n = 20 * time.Millisecond, 60 * time.Millisecond, 300
	var got arrivals
	f := newFaults(t, &got, FaultConfig{MinDelay: minDelay, MaxDelay: maxDelay, Seed: 1})
	sent := make(map[uint64]time.Time)
	for i := range uint64(n) {
		sent[i] = time.Now()
		f.Send([]*raftpb.Message{msg(1, 2, i)})
		if i%10 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	got.waitFor(t, n)

	got.mu.Lock()
	defer got.mu.Unlock()
	idx := indexes(got.msgs)
	if sorted := slices.Sorted(slices.Values(idx)); !slices.Equal(sorted, indexes(sendAllIndexes(n))) {
		t.Fatalf("delivered indexes %v, want each of 0..%d once", idx, n-1)
	}
	if slices.IsSorted(idx) {
		t.Errorf("%d messages with delays in [%v, %v] arrived in the order sent", n, minDelay, maxDelay)
	}
	for k, m := range got.msgs {
		// The lower bound is exact; the upper one only as good as the
		// scheduler of a busy machine.
		if d := got.at[k].Sub(sent[m.GetIndex()]); d < minDelay || d > maxDelay+5*time.Second {
			t.Errorf("message %d was delayed %v, want [%v, %v]", m.GetIndex(), d, minDelay, maxDelay)
		}
	}
	if st := f.Stats(); st != (FaultStats{Delayed: n}) {
		t.Errorf("stats %+v, want %d delayed and none dropped", st, n)
	}
}

func sendAllIndexes(n int) []*raftpb.Message {
	var out []*raftpb.Message
	for i := range uint64(n) {
		out = append(out, msg(1, 2, i))
	}
	return out
}

func TestFaults_DropsTheConfiguredFractionButNeverASnapshot(t *testing.T) {
	checkNoLeaks(t)
	const n, snaps, drop = 2000, 50, 0.3
	run := func(seed uint64) []uint64 {
		var got arrivals
		f := newFaults(t, &got, FaultConfig{Drop: drop, Seed: seed})
		for i := range uint64(n) {
			m := msg(1, 2, i)
			if i < snaps {
				m = &raftpb.Message{Type: raftpb.MsgSnap.Enum(), From: proto.Uint64(1), To: proto.Uint64(2), Index: proto.Uint64(i),
					Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(10), Term: proto.Uint64(1)}}}
			}
			f.Send([]*raftpb.Message{m})
		}
		st := f.Stats()
		got.waitFor(t, n-int(st.Dropped))
		f.Close()
		if st := f.Stats(); st.Delayed+st.Dropped != n || got.count() != int(st.Delayed) {
			t.Fatalf("stats %+v and %d delivered do not add up to %d sent", st, got.count(), n)
		}
		if lo, hi := uint64((drop-0.05)*n), uint64((drop+0.05)*n); st.Dropped < lo || st.Dropped > hi {
			t.Errorf("dropped %d of %d, want about %.0f%%", st.Dropped, n, 100*drop)
		}
		idx := slices.Sorted(slices.Values(indexes(got.msgs)))
		for i := range uint64(snaps) {
			if _, ok := slices.BinarySearch(idx, i); !ok {
				t.Errorf("snapshot %d was dropped", i)
			}
		}
		return idx
	}
	if a, b := run(42), run(42); !slices.Equal(a, b) {
		t.Errorf("the same seed dropped different messages")
	}
}

func TestFaults_CloseDropsWhatIsPendingAndStops(t *testing.T) {
	checkNoLeaks(t)
	var got arrivals
	f := newFaults(t, &got, FaultConfig{MinDelay: time.Hour, MaxDelay: time.Hour})
	f.Send(sendAllIndexes(10))
	f.Close()
	f.Send(sendAllIndexes(3))
	f.SetActive(false)
	f.Send(sendAllIndexes(2))
	f.Close()
	if st := f.Stats(); st != (FaultStats{Dropped: 15}) {
		t.Errorf("stats %+v, want 15 dropped", st)
	}
	if got.count() != 0 {
		t.Errorf("%d messages delivered after Close", got.count())
	}
}

func TestFaults_InactivePassesMessagesAtOnce(t *testing.T) {
	checkNoLeaks(t)
	var got arrivals
	f := newFaults(t, &got, FaultConfig{MinDelay: time.Hour, MaxDelay: time.Hour, Drop: 0.5})
	f.Send(sendAllIndexes(4))
	f.SetActive(false)
	if f.Active() {
		t.Fatal("Active() after SetActive(false)")
	}
	f.Send(sendAllIndexes(10))
	if got.count() != 10 {
		t.Fatalf("%d of 10 messages passed on at once while inactive", got.count())
	}
	f.SetActive(true)
	f.Send(sendAllIndexes(6))
	if got.count() != 10 {
		t.Errorf("a message passed on at once while active")
	}
	if st := f.Stats(); st.Passed != 10 || st.Delayed != 0 || st.Dropped > 10 {
		t.Errorf("stats %+v, want 10 passed", st)
	}
}

// A Faults in front of a real transport: Raft on the other end gets every
// message, out of order.
func TestFaults_OverQUICMessagesArriveReordered(t *testing.T) {
	checkNoLeaks(t)
	a, b := newMember(t, 1, ""), newMember(t, 2, "")
	connect(a, b)
	f := newFaults(t, a.Transport, FaultConfig{MinDelay: time.Millisecond, MaxDelay: 30 * time.Millisecond, Seed: 3})

	const n = 500
	for i := 0; i < n; {
		var batch []*raftpb.Message
		for k := 0; k < 1+i%5 && i < n; k++ {
			batch = append(batch, msg(1, 2, uint64(i)))
			i++
		}
		f.Send(batch)
		time.Sleep(100 * time.Microsecond)
	}
	idx := indexes(b.raft.waitForMessages(t, 1, n))
	if slices.IsSorted(idx) {
		t.Errorf("messages arrived in the order sent")
	}
	if sorted := slices.Sorted(slices.Values(idx)); !slices.Equal(sorted, indexes(sendAllIndexes(n))) {
		t.Fatalf("delivered indexes %v, want each of 0..%d once", idx, n-1)
	}
}
