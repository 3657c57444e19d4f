package framework

import (
	"os"
	"testing"
)

func TestParseProcMem_ReadsRSSHighWaterMarkAnonAndFileInBytes(t *testing.T) {
	status := "Name:\tetcd\nVmPeak:\t 2000000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\nRssAnon:\t   10240 kB\nRssFile:\t   30720 kB\nRssShmem:\t       0 kB\nThreads:\t12\n"
	pm, err := parseProcMem([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if want := (ProcMem{RSS: 40 << 20, HWM: 50 << 20, Anon: 10 << 20, File: 30 << 20}); pm != want {
		t.Fatalf("got %+v, want %+v", pm, want)
	}
	if _, err := parseProcMem([]byte("Name:\tkthreadd\n")); err == nil {
		t.Fatal("a status without VmRSS must be an error")
	}
}

func TestReadProcMem_OfThisProcess(t *testing.T) {
	pm, err := ReadProcMem(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if pm.RSS <= 0 || pm.HWM < pm.RSS || pm.Anon <= 0 || pm.File <= 0 || pm.Anon+pm.File > pm.RSS {
		t.Fatalf("implausible %+v", pm)
	}
}
