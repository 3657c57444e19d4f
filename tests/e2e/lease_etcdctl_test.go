package e2e

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edgekv/edgekv/tests/framework"
)

// leaseCtlStep is one etcdctl run of the lease list. In args, "{id}" is
// the lease the latest grant step made, in hex as etcdctl takes it.
type leaseCtlStep struct {
	args    []string
	wantErr bool
	grant   bool // its answer names a new lease: it becomes {id}
}

func leaseStep(args ...string) leaseCtlStep    { return leaseCtlStep{args: args} }
func leaseStepErr(args ...string) leaseCtlStep { return leaseCtlStep{args: args, wantErr: true} }
func leaseGrant(args ...string) leaseCtlStep   { return leaseCtlStep{args: args, grant: true} }

var leaseCtlSteps = []leaseCtlStep{
	leaseGrant("lease", "grant", "100"),
	leaseStep("put", "--lease={id}", "leased/a", "1"),
	leaseStep("put", "--lease={id}", "leased/b", "2"),
	leaseStep("put", "other", "3"),
	leaseStep("get", "leased/a", "-w", "json"),
	leaseStep("lease", "timetolive", "{id}"),
	leaseStep("lease", "timetolive", "{id}", "--keys"),
	leaseStep("lease", "timetolive", "{id}", "--keys", "-w", "json"),
	leaseStep("lease", "keep-alive", "--once", "{id}"),
	leaseStep("lease", "list"),
	leaseStep("lease", "list", "-w", "json"),
	leaseStep("lease", "revoke", "{id}"),
	leaseStep("get", "", "--prefix"),
	leaseStep("lease", "timetolive", "{id}"),
	leaseStep("lease", "timetolive", "{id}", "-w", "json"),
	leaseStepErr("lease", "revoke", "{id}"),
	leaseStepErr("lease", "keep-alive", "--once", "{id}"),
	leaseStepErr("put", "--lease={id}", "leased/c", "4"),
	leaseStep("lease", "list"),
	leaseStepErr("lease", "grant", "9000000001"),
	leaseGrant("lease", "grant", "50", "-w", "json"),
	leaseStep("put", "--lease={id}", "leased/d", "5", "-w", "json"),
	leaseStep("lease", "revoke", "{id}", "-w", "json"),
	leaseStep("get", "", "--prefix", "--keys-only"),
	// The shortest TTL is raised to 1.5 election timeouts (2 s); nothing
	// after this step, which the lease could outlive or not.
	leaseGrant("lease", "grant", "1"),
}

// TestLease_EtcdctlSameAnswersAsEtcd runs stock etcdctl's lease commands
// (grant, put --lease, timetolive with and without keys, keep-alive --once,
// list, revoke, and their errors) against a fresh 1-member cluster of each
// server, and compares every answer with real etcd's, after masking what
// differs between two clusters (IDs, ports, Raft term) and checking, then
// masking, the remaining TTL (which depends on timing).
func TestLease_EtcdctlSameAnswersAsEtcd(t *testing.T) {
	ctl := framework.BuildEtcdctl(t)
	want := leaseCtlTranscript(t, ctl, framework.BuildEtcd(t))
	for i, s := range leaseCtlSteps {
		require.Equal(t, s.wantErr, want[i].ExitCode != 0,
			"etcd's answer to etcdctl %s: table says wantErr=%v\n%s", strings.Join(s.args, " "), s.wantErr, want[i])
	}
	for _, s := range []server{edgekv, etcd} {
		t.Run(s.name, func(t *testing.T) {
			if s.name == edgekv.name {
				skipEdgekvIfAsked(t)
			}
			got := leaseCtlTranscript(t, ctl, s.build(t))
			for i, st := range leaseCtlSteps {
				if got[i] != want[i] {
					t.Errorf("etcdctl %s: answers differ (masked)\n----- etcd -----\n%s----- %s -----\n%s",
						strings.Join(st.args, " "), want[i], s.name, got[i])
				}
			}
		})
	}
}

var (
	grantedRe   = regexp.MustCompile(`lease ([0-9a-f]+) granted with TTL`)
	grantJSONRe = regexp.MustCompile(`"ID":(\d+)`)
	remainingRe = regexp.MustCompile(`TTL\((\d+)s\), remaining\((\d+)s\)`)
	ttlJSONRe   = regexp.MustCompile(`"ttl":(\d+),"granted-ttl":(\d+)`)
)

func leaseCtlTranscript(t *testing.T, ctl, binary string) []ctlAnswer {
	t.Helper()
	c := framework.StartCluster(t, binary, 1)
	m := newMasker(t, c)
	var (
		out    []ctlAnswer
		id     string             // the current {id}, hex
		leases = map[string]int{} // lease ID (hex) -> order of grant
	)
	for _, s := range leaseCtlSteps {
		args := make([]string, len(s.args))
		for i, a := range s.args {
			args[i] = strings.ReplaceAll(a, "{id}", id)
		}
		res := framework.RunEtcdctl(t, ctl, c.Endpoints(), "", args...)
		t.Logf("etcdctl %s: exit %d\n%s%s", strings.Join(args, " "), res.ExitCode, res.Stdout, res.Stderr)
		if s.grant {
			if g := grantedRe.FindStringSubmatch(res.Stdout); g != nil {
				id = g[1]
			} else if g := grantJSONRe.FindStringSubmatch(res.Stdout); g != nil {
				n, err := strconv.ParseInt(g[1], 10, 64)
				require.NoError(t, err)
				id = strconv.FormatInt(n, 16)
			} else {
				t.Fatalf("etcdctl %s named no lease:\n%s", strings.Join(args, " "), res.Stdout)
			}
			leases[id] = len(leases) + 1
		}
		checkRemaining(t, res.Stdout)
		out = append(out, ctlAnswer{
			Stdout:   maskLeases(m.mask(res.Stdout, nil), leases),
			Stderr:   maskLeases(m.mask(dropLogLines(res.Stderr), nil), leases),
			ExitCode: res.ExitCode,
		})
	}
	return out
}

// checkRemaining fails the test if a remaining TTL is not within a few
// seconds below the granted one (the steps run in well under that).
func checkRemaining(t *testing.T, out string) {
	t.Helper()
	for _, re := range []*regexp.Regexp{remainingRe, ttlJSONRe} {
		for _, m := range re.FindAllStringSubmatch(out, -1) {
			a, _ := strconv.Atoi(m[1])
			b, _ := strconv.Atoi(m[2])
			granted, remaining := a, b
			if re == ttlJSONRe {
				granted, remaining = b, a
			}
			if remaining > granted || remaining < granted-5 {
				t.Errorf("remaining TTL %d of %d in %q", remaining, granted, out)
			}
		}
	}
}

// maskLeases names lease IDs (hex and decimal) by the order they were
// granted, and blanks remaining TTLs.
func maskLeases(s string, leases map[string]int) string {
	type pair struct{ old, new string }
	var pairs []pair
	for hex, n := range leases {
		v, _ := strconv.ParseInt(hex, 16, 64)
		name := "<lease-" + strconv.Itoa(n) + ">"
		pairs = append(pairs, pair{hex, name}, pair{strconv.FormatInt(v, 10), name})
	}
	sort.Slice(pairs, func(i, j int) bool { return len(pairs[i].old) > len(pairs[j].old) })
	var args []string
	for _, p := range pairs {
		args = append(args, p.old, p.new)
	}
	s = strings.NewReplacer(args...).Replace(s)
	s = remainingRe.ReplaceAllString(s, "TTL(${1}s), remaining(<n>s)")
	s = ttlJSONRe.ReplaceAllString(s, `"ttl":<n>,"granted-ttl":${2}`)
	return sortAttachedKeys(s)
}

var (
	attachedTextRe = regexp.MustCompile(`attached keys\(\[([^\]]*)\]\)`)
	attachedJSONRe = regexp.MustCompile(`"keys":\[([^\]]*)\]`)
)

// sortAttachedKeys sorts the attached keys etcdctl prints: etcd lists them
// in map order, which differs from run to run (edgekv sorts them).
func sortAttachedKeys(s string) string {
	sorted := func(re *regexp.Regexp, sep string) func(string) string {
		return func(m string) string {
			inner := re.FindStringSubmatch(m)[1]
			items := strings.Split(inner, sep)
			sort.Strings(items)
			return strings.Replace(m, inner, strings.Join(items, sep), 1)
		}
	}
	s = attachedTextRe.ReplaceAllStringFunc(s, sorted(attachedTextRe, " "))
	return attachedJSONRe.ReplaceAllStringFunc(s, sorted(attachedJSONRe, ","))
}
