package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgekv/edgekv/cmd/edgekv/bench"
)

// newBenchCommand is `edgekv bench`: flags in, bench.Run, report out. The
// flags follow etcd's tools/benchmark.
func newBenchCommand(stdout, stderr io.Writer) *cobra.Command {
	var (
		cfg    bench.Config
		output string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load any etcd v3 endpoint and report latency and throughput",
		Long: `bench is a load generator modelled on etcd's tools/benchmark. It talks to any
etcd v3 endpoint (edgekv or etcd) through the official Go client, so both
servers are measured alike. The report goes to stdout (--output table or
json); progress lines go to stderr. It exits non-zero if every operation
failed, if watch events went missing, or on Ctrl-C (after the partial report).`,
		Args: cobra.NoArgs,
	}
	pf := cmd.PersistentFlags()
	pf.StringSliceVar(&cfg.Endpoints, "endpoints", []string{"127.0.0.1:2379"}, "gRPC endpoints, comma-separated")
	pf.IntVar(&cfg.Conns, "conns", 1, "Number of gRPC connections, each its own client")
	pf.IntVar(&cfg.Clients, "clients", 1, "Number of concurrent clients, spread round-robin over the connections")
	pf.IntVar(&cfg.Total, "total", 10000, "Number of operations (watch-latency: puts)")
	pf.DurationVar(&cfg.Duration, "duration", 0, "Stop after this long; alone (without --total) it replaces --total, with it whichever comes first ends the run")
	pf.IntVar(&cfg.KeySize, "key-size", 8, "Key size in bytes: the key's index in big-endian, zero-padded on the left")
	pf.IntVar(&cfg.ValSize, "val-size", 8, "Value size in bytes")
	pf.IntVar(&cfg.KeySpace, "key-space", 1, "Number of distinct keys (etcd's --key-space-size)")
	pf.BoolVar(&cfg.SequentialKeys, "sequential-keys", false, "Use key i mod --key-space for operation i instead of a random key")
	pf.BoolVar(&cfg.TargetLeader, "target-leader", false, "Send everything to the leader's endpoint, found with Status on each endpoint")
	pf.StringVar(&output, "output", "table", "Report format: table or json")
	pf.DurationVar(&cfg.DialTimeout, "dial-timeout", 5*time.Second, "Time for each endpoint to answer Status before the run (0 means 5s)")
	pf.DurationVar(&cfg.RequestTimeout, "request-timeout", 10*time.Second, "Timeout of each operation; 0 for none")
	pf.IntVar(&cfg.Rate, "rate", 0, "Maximum operations per second over all clients; 0 for no limit")

	run := func(load bench.Load) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("--output must be table or json, not %q", output)
			}
			c := cfg
			if cmd.Flags().Changed("duration") && !cmd.Flags().Changed("total") {
				c.Total = 0
			}
			c.Log = stderr
			rep, err := bench.Run(cmd.Context(), c, load)
			if rep != nil {
				write := rep.WriteTable
				if output == "json" {
					write = rep.WriteJSON
				}
				if werr := write(stdout); werr != nil && err == nil {
					err = werr
				}
			}
			return err
		}
	}
	sub := func(use, short string, load func() bench.Load, flags func(*cobra.Command)) {
		c := &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs, SilenceUsage: true}
		if flags != nil {
			flags(c)
		}
		c.RunE = func(cmd *cobra.Command, args []string) error { return run(load())(cmd, args) }
		cmd.AddCommand(c)
	}

	sub("put", "Put keys chosen from --key-space, values of --val-size random bytes",
		bench.Put, nil)

	var ro bench.RangeOptions
	sub("range", "Get single keys from --key-space, pre-filled first (not timed)",
		func() bench.Load { return bench.Range(ro) },
		func(c *cobra.Command) {
			c.Flags().StringVar(&ro.Consistency, "consistency", "l", "Linearizable (l) or serializable (s)")
			c.Flags().BoolVar(&ro.NoPrefill, "no-prefill", false, "Do not write the key space before measuring")
		})

	sub("txn-cas", "Compare-and-swap txns: If(Version(key)==v) Then(Put) Else(Get)",
		bench.TxnCAS, nil)

	sub("delete", "Pre-fill --total keys (not timed), then delete each once",
		bench.Delete, nil)

	var wo bench.WatchOptions
	sub("watch-latency", "Latency from a put to its event at each of --watchers watchers of one key (--total counts puts; ignores --clients and --rate)",
		func() bench.Load { return bench.WatchLatency(wo) },
		func(c *cobra.Command) {
			c.Flags().IntVar(&wo.Watchers, "watchers", 100, "Number of watchers, all of the same key, on the first endpoint")
			c.Flags().IntVar(&wo.Streams, "streams", 10, "Number of watch streams the watchers are spread over")
			c.Flags().IntVar(&wo.PutRate, "put-rate", 100, "Puts per second")
		})

	var lo bench.LeaseOptions
	sub("lease-keepalive", "Keep-alive round trips on leases granted beforehand (not timed)",
		func() bench.Load { return bench.LeaseKeepalive(lo) },
		func(c *cobra.Command) {
			c.Flags().IntVar(&lo.Leases, "leases", 0, "Number of leases to grant; 0 for one per client")
			c.Flags().BoolVar(&lo.Stream, "stream", false, "Reuse one LeaseKeepAlive stream per client instead of KeepAliveOnce (a stream per keep-alive, as etcd's tool)")
		})
	return cmd
}
