package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/edgekv/edgekv/core/server"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "edgekv Version: %s\n", version)
			fmt.Fprintf(out, "etcd API Version: %s\n", server.Version)
			fmt.Fprintf(out, "Go Version: %s\n", runtime.Version())
			fmt.Fprintf(out, "Go OS/Arch: %s/%s\n", runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
