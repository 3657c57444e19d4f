package e2e

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edgekv/edgekv/tests/framework"
)

// ctlStep is one etcdctl run. Steps run in order against one fresh 1-member
// cluster, so revisions in the answers are the same on any server that numbers
// them as etcd does.
type ctlStep struct {
	args  []string
	stdin string // for txn
	// wantErr says etcdctl exits non-zero (checked against etcd, so the table
	// itself is checked).
	wantErr bool
	// maskColumns names the columns of a -w table answer that differ between
	// members by nature (IDs, sizes, Raft term and index); they are blanked.
	// Every table answer is compared cell by cell, without borders or padding.
	maskColumns []string
}

func step(args ...string) ctlStep { return ctlStep{args: args} }

func stepErr(args ...string) ctlStep { return ctlStep{args: args, wantErr: true} }

func txn(stdin string, args ...string) ctlStep {
	return ctlStep{args: append([]string{"txn"}, args...), stdin: stdin}
}

// ctlSteps is the command list compared between edgekv and etcd.
var ctlSteps = []ctlStep{
	// writes: revisions 2..7
	step("put", "foo", "bar"),
	step("put", "foo1", "bar1"),
	step("put", "foo2", "bar2"),
	step("put", "foo3", "bar3"),
	step("put", "zoo", "zoo-val"),
	step("put", "foo", "bar-v2", "--prev-kv"),
	step("put", "empty", ""),
	step("put", "foo3", "bar3-v2", "-w", "json"),

	// get
	step("get", "foo"),
	step("get", "foo", "-w", "json"),
	step("get", "foo", "-w", "fields"),
	step("get", "foo", "--print-value-only"),
	step("get", "foo", "--prefix"),
	step("get", "foo", "--prefix", "--keys-only"),
	step("get", "foo", "--prefix", "--limit=2"),
	step("get", "foo", "--prefix", "--limit=2", "-w", "json"),
	step("get", "foo", "--prefix", "--sort-by=KEY", "--order=DESCEND"),
	step("get", "foo", "--prefix", "--sort-by=CREATE", "--order=DESCEND"),
	step("get", "foo", "--prefix", "--sort-by=MODIFY", "--order=ASCEND"),
	step("get", "foo", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"),
	step("get", "foo", "--prefix", "--sort-by=VALUE", "--order=DESCEND"),
	step("get", "foo", "--prefix", "--sort-by=VERSION", "--order=DESCEND"),
	step("get", "foo", "--prefix", "--order=DESCEND"),
	step("get", "foo", "--prefix", "--sort-by=MODIFY", "--limit=2", "-w", "json"),
	step("get", "foo", "--prefix", "--count-only", "-w", "fields"),
	step("get", "foo", "--consistency=s"),
	step("get", "foo", "--prefix", "--consistency=s", "-w", "json"),
	step("get", "foo", "foo3"),
	step("get", "foo2", "--from-key", "--keys-only"),
	step("get", "", "--prefix", "--keys-only"),
	step("get", "foo", "--rev=2"),
	step("get", "foo", "--rev=1"),
	step("get", "foo", "--prefix", "--rev=4", "-w", "json"),
	step("get", "missing", "-w", "json"),
	stepErr("get", "foo", "--rev=1000"),

	// txn, interactive, fed on stdin
	txn("value(\"foo\") = \"bar-v2\"\n\nput foo bar-v3\n\nget foo\n\n", "-i"),
	txn("ver(\"foo\") = \"1\"\n\nput foo never\n\nget foo\nput foo-failed yes\n\n", "-i"),
	txn("mod(\"foo1\") < \"100\"\ncreate(\"foo1\") = \"3\"\nversion(\"foo3\") > \"1\"\n\ndel foo1\nget foo --prefix --keys-only\n\nput nope nope\n\n", "-i"),
	txn("val(\"zoo\") != \"zoo-val\"\n\nput zoo changed\n\nget zoo\nget foo --prefix --count-only\n\n", "-w", "json"),
	txn("c(\"missing\") = \"0\"\n\nput created-by-txn yes --prev-kv\n\n\n"),

	// del
	step("del", "foo2"),
	step("del", "missing"),
	step("del", "foo", "--prefix", "--prev-kv"),
	step("del", "empty", "-w", "json"),
	step("get", "", "--prefix"),

	// compaction
	step("put", "after", "one"),
	step("put", "after", "two"),
	step("compaction", "10"),
	stepErr("get", "foo", "--rev=9"),
	step("get", "foo", "--prefix", "--rev=10"),
	step("get", "after", "-w", "json"),
	stepErr("compaction", "5"),
	stepErr("compaction", "1000"),
	step("get", "after", "--rev=0"),

	// cluster and maintenance
	{args: []string{"endpoint", "status", "-w", "table"}, maskColumns: []string{
		"ID", "VERSION", "STORAGE VERSION", "DB SIZE", "IN USE", "PERCENTAGE NOT IN USE",
		"RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX",
	}},
	step("endpoint", "health"),
	step("member", "list"),
	step("member", "list", "-w", "table"),
	step("member", "list", "-w", "json"),
}

// TestEtcdctl_SameAnswersAsEtcd runs the command list with stock etcdctl
// against a fresh 1-member cluster of each server and compares every answer
// (stdout, error lines, exit code) with real etcd's, after masking what
// differs between any two clusters: member and cluster IDs, ports, Raft term
// and index, sizes, durations. Subtest etcd runs the list against a second
// fresh etcd, which shows the masking leaves nothing that varies.
func TestEtcdctl_SameAnswersAsEtcd(t *testing.T) {
	ctl := framework.BuildEtcdctl(t)
	want := ctlTranscript(t, ctl, framework.BuildEtcd(t))
	for i, s := range ctlSteps {
		require.Equal(t, s.wantErr, want[i].ExitCode != 0,
			"etcd's answer to etcdctl %s: table says wantErr=%v\n%s", strings.Join(s.args, " "), s.wantErr, want[i])
	}
	for _, s := range []server{edgekv, etcd} {
		t.Run(s.name, func(t *testing.T) {
			if s.name == edgekv.name {
				skipEdgekvIfAsked(t)
			}
			got := ctlTranscript(t, ctl, s.build(t))
			for i, st := range ctlSteps {
				if got[i] != want[i] {
					t.Errorf("etcdctl %s%s: answers differ (masked)\n----- etcd -----\n%s----- %s -----\n%s",
						strings.Join(st.args, " "), stdinNote(st), want[i], s.name, got[i])
				}
			}
		})
	}
}

func stdinNote(s ctlStep) string {
	if s.stdin == "" {
		return ""
	}
	return fmt.Sprintf(" <<< %q", s.stdin)
}

// ctlAnswer is one masked etcdctl answer.
type ctlAnswer struct {
	Stdout, Stderr string
	ExitCode       int
}

func (a ctlAnswer) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%sstderr:\n%s", a.ExitCode, a.Stdout, a.Stderr)
}

// ctlTranscript starts a fresh 1-member cluster of binary and runs every step
// of ctlSteps against it, returning the masked answers.
func ctlTranscript(t *testing.T, ctl, binary string) []ctlAnswer {
	t.Helper()
	c := framework.StartCluster(t, binary, 1)
	m := newMasker(t, c)
	var out []ctlAnswer
	for _, s := range ctlSteps {
		res := framework.RunEtcdctl(t, ctl, c.Endpoints(), s.stdin, s.args...)
		t.Logf("etcdctl %s%s: exit %d\n%s%s", strings.Join(s.args, " "), stdinNote(s), res.ExitCode, res.Stdout, res.Stderr)
		out = append(out, ctlAnswer{
			Stdout:   m.mask(res.Stdout, s.maskColumns),
			Stderr:   m.mask(dropLogLines(res.Stderr), nil),
			ExitCode: res.ExitCode,
		})
	}
	return out
}

// dropLogLines removes the client's JSON log lines (timestamps, retry
// counts) from etcdctl's stderr, keeping what it prints for the user.
func dropLogLines(s string) string {
	var keep []string
	for _, line := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(line, `{"level":`) {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "")
}

// masker replaces what differs between two clusters by nature with names.
type masker struct {
	replacer *strings.Replacer
	ports    *regexp.Regexp
	portName map[string]string
}

var (
	termRe     = regexp.MustCompile(`("raft_term":|"RaftTerm" : )\d+`)
	durationRe = regexp.MustCompile(`took = \S+`)
)

func newMasker(t *testing.T, c *framework.Cluster) *masker {
	t.Helper()
	cli := c.ClientAll(t)
	ctx, cancel := context.WithTimeout(context.Background(), framework.OpTimeout)
	defer cancel()
	ml, err := cli.MemberList(ctx)
	require.NoError(t, err, "member list")
	// Longest first, so a decimal ID is never cut by a shorter value inside it.
	type pair struct{ old, new string }
	var pairs []pair
	add := func(id uint64, name string) {
		pairs = append(pairs,
			pair{strconv.FormatUint(id, 10), "<" + name + ">"},
			pair{strconv.FormatUint(id, 16), "<" + name + ">"},
			pair{fmt.Sprintf("%016x", id), "<" + name + ">"})
	}
	add(ml.Header.ClusterId, "cluster-id")
	for _, mem := range ml.Members {
		add(mem.ID, "id-of-"+mem.Name)
	}
	sort.SliceStable(pairs, func(i, j int) bool { return len(pairs[i].old) > len(pairs[j].old) })
	var args []string
	for _, p := range pairs {
		args = append(args, p.old, p.new)
	}
	m := &masker{replacer: strings.NewReplacer(args...), portName: map[string]string{}}
	var alts []string
	for _, mem := range c.Members {
		for port, name := range map[int]string{mem.ClientPort: "client-port-of-" + mem.Name, mem.PeerPort: "peer-port-of-" + mem.Name} {
			p := strconv.Itoa(port)
			m.portName[p] = "<" + name + ">"
			alts = append(alts, p)
		}
	}
	m.ports = regexp.MustCompile(`\b(` + strings.Join(alts, "|") + `)\b`)
	return m
}

func (m *masker) mask(s string, columns []string) string {
	if isTable(s) {
		s = maskTable(s, columns)
	}
	s = m.replacer.Replace(s)
	s = m.ports.ReplaceAllStringFunc(s, func(p string) string { return m.portName[p] })
	s = termRe.ReplaceAllString(s, "${1}<term>")
	return durationRe.ReplaceAllString(s, "took = <duration>")
}

// isTable reports whether s is a -w table answer.
func isTable(s string) bool {
	return strings.IndexAny(strings.TrimSpace(s), "+┌") == 0
}

// maskTable rewrites a -w table answer as one line per row with cells
// separated by " | ", blanking the named columns; borders and padding (which
// follow the width of the masked values) are dropped.
func maskTable(s string, columns []string) string {
	masked := map[int]bool{}
	var out []string
	header := true
	for _, line := range strings.Split(s, "\n") {
		// etcdctl draws tables with box-drawing characters (older ones with ASCII).
		line = strings.ReplaceAll(strings.TrimSpace(line), "│", "|")
		if !strings.HasPrefix(line, "|") {
			if line != "" && strings.IndexAny(line, "+┌├└") != 0 {
				out = append(out, line)
			}
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
			if header {
				for _, c := range columns {
					if cells[i] == c {
						masked[i] = true
					}
				}
			} else if masked[i] {
				cells[i] = "<masked>"
			}
		}
		header = false
		out = append(out, strings.Join(cells, " | "))
	}
	return strings.Join(out, "\n") + "\n"
}

func TestMaskTable_ComparesCellsWithoutBordersOrPadding(t *testing.T) {
	narrow := "┌────┬──────┐\n│ ID │ NAME │\n├────┼──────┤\n│ 1a │   m0 │\n└────┴──────┘\n"
	wide := "+------------------+------+\n|        ID        | NAME |\n+------------------+------+\n| 8ae840adc37da0ac |   m0 |\n+------------------+------+\n"
	require.True(t, isTable(narrow))
	require.True(t, isTable(wide))
	require.False(t, isTable("OK\n"))
	require.Equal(t, "ID | NAME\n<masked> | m0\n", maskTable(narrow, []string{"ID"}))
	require.Equal(t, maskTable(narrow, []string{"ID"}), maskTable(wide, []string{"ID"}))
	require.NotEqual(t, maskTable(narrow, nil), maskTable(wide, nil), "unmasked IDs still differ")
}
