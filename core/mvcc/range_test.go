package mvcc

import (
	"errors"
	"reflect"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// rangeFixture: a{w,c2,m5,v2} b{t,c3,m8,v3} c{x,c4,m4,v1} d{v,c6,m6,v1}
// e{s,c9,m9,v1,lease 7}; current revision 9.
func rangeFixture(t *testing.T) *testStore {
	s := newTestStore(t)
	s.put("a", "z")                                                             // 2
	s.put("b", "y")                                                             // 3
	s.put("c", "x")                                                             // 4
	s.put("a", "w")                                                             // 5
	s.put("d", "v")                                                             // 6
	s.put("b", "u")                                                             // 7
	s.put("b", "t")                                                             // 8
	s.mustApply(&pb.PutRequest{Key: []byte("e"), Value: []byte("s"), Lease: 7}) // 9
	return s
}

func TestRange_EveryOptionBehavesAsEtcd(t *testing.T) {
	s := rangeFixture(t)
	all := func(r *pb.RangeRequest) *pb.RangeRequest {
		r.Key, r.RangeEnd = []byte{0}, []byte{0}
		return r
	}
	tests := []struct {
		name      string
		req       *pb.RangeRequest
		wantKeys  []string
		wantVals  []string // nil: not checked
		wantCount int64
		wantMore  bool
		wantErr   error
	}{
		{name: "a single key", req: &pb.RangeRequest{Key: []byte("b")}, wantKeys: []string{"b"}, wantVals: []string{"t"}, wantCount: 1},
		{name: "a missing key", req: &pb.RangeRequest{Key: []byte("bb")}, wantKeys: []string{}, wantCount: 0},
		{name: "a half-open range", req: &pb.RangeRequest{Key: []byte("b"), RangeEnd: []byte("d")}, wantKeys: []string{"b", "c"}, wantCount: 2},
		{name: "range_end \\x00 means every key from key on", req: &pb.RangeRequest{Key: []byte("c"), RangeEnd: []byte{0}}, wantKeys: []string{"c", "d", "e"}, wantCount: 3},
		{name: "key and range_end \\x00 mean every key", req: all(&pb.RangeRequest{}), wantKeys: []string{"a", "b", "c", "d", "e"}, wantCount: 5},
		{name: "a prefix range", req: &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("b")}, wantKeys: []string{"a"}, wantCount: 1},
		{name: "a limit cuts and sets more, count stays the total", req: all(&pb.RangeRequest{Limit: 2}), wantKeys: []string{"a", "b"}, wantCount: 5, wantMore: true},
		{name: "a limit equal to the total does not set more", req: all(&pb.RangeRequest{Limit: 5}), wantKeys: []string{"a", "b", "c", "d", "e"}, wantCount: 5},
		{name: "a negative limit is no limit", req: all(&pb.RangeRequest{Limit: -1}), wantKeys: []string{"a", "b", "c", "d", "e"}, wantCount: 5},
		{name: "an old revision sees the old values", req: all(&pb.RangeRequest{Revision: 4}), wantKeys: []string{"a", "b", "c"}, wantVals: []string{"z", "y", "x"}, wantCount: 3},
		{name: "a future revision fails", req: all(&pb.RangeRequest{Revision: 10}), wantErr: ErrFutureRev},
		{name: "keys_only drops the values", req: all(&pb.RangeRequest{KeysOnly: true}), wantKeys: []string{"a", "b", "c", "d", "e"}, wantVals: []string{"", "", "", "", ""}, wantCount: 5},
		{name: "count_only returns only the count", req: all(&pb.RangeRequest{CountOnly: true, Limit: 1}), wantKeys: []string{}, wantCount: 5},
		{name: "count_only at an old revision", req: all(&pb.RangeRequest{CountOnly: true, Revision: 3}), wantKeys: []string{}, wantCount: 2},
		{name: "sort by key descending", req: all(&pb.RangeRequest{SortTarget: pb.RangeRequest_KEY, SortOrder: pb.RangeRequest_DESCEND}), wantKeys: []string{"e", "d", "c", "b", "a"}, wantCount: 5},
		{name: "a sort target with order NONE sorts ascending", req: all(&pb.RangeRequest{SortTarget: pb.RangeRequest_VERSION}), wantKeys: []string{"c", "d", "e", "a", "b"}, wantCount: 5},
		{name: "sort by mod revision descending", req: all(&pb.RangeRequest{SortTarget: pb.RangeRequest_MOD, SortOrder: pb.RangeRequest_DESCEND}), wantKeys: []string{"e", "b", "d", "a", "c"}, wantCount: 5},
		{name: "sort by create revision ascending", req: all(&pb.RangeRequest{SortTarget: pb.RangeRequest_CREATE, SortOrder: pb.RangeRequest_ASCEND}), wantKeys: []string{"a", "b", "c", "d", "e"}, wantCount: 5},
		{name: "sort by value ascending", req: all(&pb.RangeRequest{SortTarget: pb.RangeRequest_VALUE, SortOrder: pb.RangeRequest_ASCEND}), wantKeys: []string{"e", "b", "d", "a", "c"}, wantCount: 5},
		{name: "sort by value descending with a limit sorts before cutting", req: all(&pb.RangeRequest{SortTarget: pb.RangeRequest_VALUE, SortOrder: pb.RangeRequest_DESCEND, Limit: 2}), wantKeys: []string{"c", "a"}, wantCount: 5, wantMore: true},
		{name: "sort by mod ascending with a limit", req: all(&pb.RangeRequest{SortTarget: pb.RangeRequest_MOD, SortOrder: pb.RangeRequest_ASCEND, Limit: 2}), wantKeys: []string{"c", "a"}, wantCount: 5, wantMore: true},
		{name: "keys_only with a value sort still sorts by value", req: all(&pb.RangeRequest{KeysOnly: true, SortTarget: pb.RangeRequest_VALUE}), wantKeys: []string{"e", "b", "d", "a", "c"}, wantVals: []string{"", "", "", "", ""}, wantCount: 5},
		{name: "min_mod_revision filters, count does not", req: all(&pb.RangeRequest{MinModRevision: 6}), wantKeys: []string{"b", "d", "e"}, wantCount: 5},
		{name: "max_mod_revision filters", req: all(&pb.RangeRequest{MaxModRevision: 5}), wantKeys: []string{"a", "c"}, wantCount: 5},
		{name: "min_create_revision filters", req: all(&pb.RangeRequest{MinCreateRevision: 4}), wantKeys: []string{"c", "d", "e"}, wantCount: 5},
		{name: "max_create_revision filters", req: all(&pb.RangeRequest{MaxCreateRevision: 3}), wantKeys: []string{"a", "b"}, wantCount: 5},
		{name: "min and max together", req: all(&pb.RangeRequest{MinModRevision: 5, MaxModRevision: 8, MinCreateRevision: 3}), wantKeys: []string{"b", "d"}, wantCount: 5},
		{name: "a filter with a limit cuts after filtering", req: all(&pb.RangeRequest{MinModRevision: 5, Limit: 2}), wantKeys: []string{"a", "b"}, wantCount: 5, wantMore: true},
		{name: "a filter leaving exactly the limit does not set more", req: all(&pb.RangeRequest{MaxModRevision: 5, Limit: 2}), wantKeys: []string{"a", "c"}, wantCount: 5},
		{name: "filter, sort and limit together", req: all(&pb.RangeRequest{MinCreateRevision: 3, SortTarget: pb.RangeRequest_MOD, SortOrder: pb.RangeRequest_DESCEND, Limit: 2}), wantKeys: []string{"e", "b"}, wantCount: 5, wantMore: true},
		{name: "filters at an old revision", req: all(&pb.RangeRequest{Revision: 5, MinModRevision: 4}), wantKeys: []string{"a", "c"}, wantVals: []string{"w", "x"}, wantCount: 3},
		{name: "count_only ignores filters", req: all(&pb.RangeRequest{CountOnly: true, MinModRevision: 9}), wantKeys: []string{}, wantCount: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := s.Range(tt.req)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got := keysOf(resp.Kvs); !reflect.DeepEqual(got, tt.wantKeys) {
				t.Fatalf("keys %q, want %q", got, tt.wantKeys)
			}
			if tt.wantVals != nil {
				vals := make([]string, len(resp.Kvs))
				for i, kv := range resp.Kvs {
					vals[i] = string(kv.Value)
				}
				if !reflect.DeepEqual(vals, tt.wantVals) {
					t.Fatalf("values %q, want %q", vals, tt.wantVals)
				}
			}
			if resp.Count != tt.wantCount || resp.More != tt.wantMore {
				t.Fatalf("count %d more %v, want %d %v", resp.Count, resp.More, tt.wantCount, tt.wantMore)
			}
			if resp.Header == nil || resp.Header.Revision != 9 {
				t.Fatalf("header %v, want revision 9", resp.Header)
			}
		})
	}
}

func TestRange_ReturnsFullKeyValues(t *testing.T) {
	s := rangeFixture(t)
	resp, err := s.Range(&pb.RangeRequest{Key: []byte("e")})
	if err != nil {
		t.Fatal(err)
	}
	if got := summarize(resp.Kvs); !reflect.DeepEqual(got, []kvSummary{{"e", "s", 9, 9, 1, 7}}) {
		t.Fatalf("e = %+v", got)
	}
	// As etcd 3.6+, keys_only answers from the index: no value, no lease.
	resp, err = s.Range(&pb.RangeRequest{Key: []byte("e"), KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := summarize(resp.Kvs); !reflect.DeepEqual(got, []kvSummary{{"e", "", 9, 9, 1, 0}}) {
		t.Fatalf("keys_only e = %+v", got)
	}
}

func TestValidateRange_RejectsWhatEtcdRejects(t *testing.T) {
	tests := []struct {
		name string
		req  *pb.RangeRequest
		want error
	}{
		{"a range with a key is valid", &pb.RangeRequest{Key: []byte("a")}, nil},
		{"an empty key is rejected", &pb.RangeRequest{}, ErrEmptyKey},
		{"an unknown sort order is rejected", &pb.RangeRequest{Key: []byte("a"), SortOrder: 9}, ErrInvalidSortOption},
		{"an unknown sort target is rejected", &pb.RangeRequest{Key: []byte("a"), SortTarget: 9}, ErrInvalidSortOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ValidateRange(tt.req); !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
}
