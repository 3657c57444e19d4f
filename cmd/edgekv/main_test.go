package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

func TestRun_VersionPrintsTheVersion(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"version"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "edgekv Version: ") || !strings.Contains(out.String(), "etcd API Version: 3.") {
		t.Fatalf("version output: %q", out.String())
	}
}

func TestFlagsFromEnv_SetsUnsetFlagsAndCommandLineWins(t *testing.T) {
	cmd := newRootCommand(io.Discard, io.Discard)
	fs := cmd.Flags()
	if err := fs.Parse([]string{"--name", "cli"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"EDGEKV_NAME":               "env",
		"EDGEKV_INITIAL_CLUSTER":    "a=http://127.0.0.1:1,b=http://127.0.0.1:2",
		"EDGEKV_LISTEN_CLIENT_URLS": "http://127.0.0.1:1,http://127.0.0.1:2",
		"EDGEKV_HEARTBEAT_INTERVAL": "50",
	}
	var warn bytes.Buffer
	err := flagsFromEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, &warn)
	if err != nil {
		t.Fatal(err)
	}
	get := func(name string) string { return fs.Lookup(name).Value.String() }
	if get("name") != "cli" {
		t.Errorf("--name = %q, the command line should win", get("name"))
	}
	if !strings.Contains(warn.String(), "EDGEKV_NAME is shadowed") {
		t.Errorf("no shadowing warning: %q", warn.String())
	}
	if get("initial-cluster") != env["EDGEKV_INITIAL_CLUSTER"] {
		t.Errorf("--initial-cluster = %q", get("initial-cluster"))
	}
	if get("listen-client-urls") != "[http://127.0.0.1:1,http://127.0.0.1:2]" {
		t.Errorf("--listen-client-urls = %q", get("listen-client-urls"))
	}
	if get("heartbeat-interval") != "50" {
		t.Errorf("--heartbeat-interval = %q", get("heartbeat-interval"))
	}
}

func TestFlagsFromEnv_BadValueIsAnError(t *testing.T) {
	cmd := newRootCommand(io.Discard, io.Discard)
	err := flagsFromEnv(cmd.Flags(), func(k string) (string, bool) {
		if k == "EDGEKV_ELECTION_TIMEOUT" {
			return "soon", true
		}
		return "", false
	}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "EDGEKV_ELECTION_TIMEOUT") {
		t.Fatalf("got %v", err)
	}
}

func TestRun_RejectsBadFlagsBeforeTouchingDisk(t *testing.T) {
	dir := t.TempDir()
	cases := map[string][]string{
		"election too short":  {"--heartbeat-interval", "100", "--election-timeout", "200"},
		"bad cluster state":   {"--initial-cluster-state", "maybe"},
		"bad initial cluster": {"--initial-cluster", "nonsense"},
		"https client url":    {"--listen-client-urls", "https://127.0.0.1:0"},
		"unknown peer scheme": {"--listen-peer-urls", "unix:///x"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			err := Run(context.Background(), append([]string{"--data-dir", dir + "/" + strings.ReplaceAll(name, " ", "-")}, args...), io.Discard, io.Discard)
			if err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
