package e2e

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDurabilityCheck_AcceptsExactlyThePossibleOutcomes pins down the check of
// TestDurability_KillAllMidLoadLosesNoAcknowledgedWrite on made-up histories:
// what must be there, what may be, and what may not.
func TestDurabilityCheck_AcceptsExactlyThePossibleOutcomes(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	acked := func(key, val string, sent, ack int) *putRecord {
		return &putRecord{key: key, val: val, sent: at(sent), acked: true, ackedAt: at(ack)}
	}
	unknown := func(key, val string, sent int) *putRecord {
		return &putRecord{key: key, val: val, sent: at(sent)}
	}
	settled := func(key, val string, sent, settle int) *putRecord {
		return &putRecord{key: key, val: val, sent: at(sent), settledAt: at(settle)}
	}
	for _, tc := range []struct {
		name  string
		puts  []*putRecord
		state map[string]string
		ok    bool
	}{
		{"an acknowledged put is there", []*putRecord{acked("a", "1", 0, 5)}, map[string]string{"a": "1"}, true},
		{"an acknowledged put is missing", []*putRecord{acked("a", "1", 0, 5)}, map[string]string{}, false},
		{"an acknowledged put has another value", []*putRecord{acked("a", "1", 0, 5)}, map[string]string{"a": "2"}, false},
		{"a key never written appears", []*putRecord{acked("a", "1", 0, 5)}, map[string]string{"a": "1", "b": "1"}, false},
		{"an unknown put is missing", []*putRecord{unknown("a", "1", 0)}, map[string]string{}, true},
		{"an unknown put is there", []*putRecord{unknown("a", "1", 0)}, map[string]string{"a": "1"}, true},
		{"the later of two sequential acknowledged puts wins",
			[]*putRecord{acked("a", "1", 0, 5), acked("a", "2", 6, 9)}, map[string]string{"a": "2"}, true},
		{"the earlier of two sequential acknowledged puts wins: rolled back",
			[]*putRecord{acked("a", "1", 0, 5), acked("a", "2", 6, 9)}, map[string]string{"a": "1"}, false},
		{"either of two concurrent acknowledged puts may win (1)",
			[]*putRecord{acked("a", "1", 0, 8), acked("a", "2", 2, 6)}, map[string]string{"a": "1"}, true},
		{"either of two concurrent acknowledged puts may win (2)",
			[]*putRecord{acked("a", "1", 0, 8), acked("a", "2", 2, 6)}, map[string]string{"a": "2"}, true},
		{"an unknown put sent before an acknowledged one may still win",
			[]*putRecord{unknown("a", "1", 0), acked("a", "2", 6, 9)}, map[string]string{"a": "1"}, true},
		{"an acknowledged put overwritten by a later acknowledged one does not come back",
			[]*putRecord{acked("a", "1", 0, 5), unknown("a", "2", 6), acked("a", "3", 10, 12)}, map[string]string{"a": "1"}, false},
		{"an unknown put after the last acknowledged one may win",
			[]*putRecord{acked("a", "1", 0, 5), unknown("a", "2", 6)}, map[string]string{"a": "2"}, true},
		{"an unanswered put settled by a restart does not win over an acknowledged put sent after that",
			[]*putRecord{settled("a", "1", 0, 5), acked("a", "2", 6, 9)}, map[string]string{"a": "1"}, false},
		{"an unanswered put settled by a restart may win over an acknowledged put sent before that",
			[]*putRecord{acked("a", "1", 0, 2), settled("a", "2", 1, 5)}, map[string]string{"a": "2"}, true},
		{"an overwritten key may not vanish",
			[]*putRecord{acked("a", "1", 0, 5), unknown("a", "2", 6)}, map[string]string{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHistory()
			for _, p := range tc.puts {
				h.record(p)
			}
			problems, _ := h.impossible(tc.state)
			if tc.ok {
				require.Empty(t, problems)
			} else {
				require.NotEmpty(t, problems)
				t.Log(problems)
			}
		})
	}
}
