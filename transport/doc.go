// Package transport is the QUIC peer transport: it carries Raft messages
// between the members of an edgekv cluster. It implements
// raftnode.Transport and delivers inbound traffic to a raftnode.Raft.
//
// # What it owns
//
// A Transport owns one UDP socket (Config.ListenAddr), a QUIC listener and
// dialer on it, an in-memory self-signed ECDSA P-256 certificate generated
// by New, one sending goroutine and bounded queue per peer, one reading
// goroutine per inbound connection, and one goroutine that makes delivery
// reports to Raft. Close stops and waits for all of them and releases the
// socket.
//
// # Threading
//
// Send is called from the Raft goroutine and never blocks: it puts each
// message on its peer's queue (4096 messages). When a queue is full the
// message is dropped and the peer reported unreachable; a dropped MsgSnap
// is also reported as SnapshotFailure. Messages to unknown peers are
// dropped silently. AddPeer, RemovePeer and Close may be called from any
// goroutine; Close must not be called from inside a Raft method.
//
// The transport calls Raft as follows:
//   - Process: from the reading goroutine of each inbound connection (one
//     per connected peer), in the order the peer sent, with a context that
//     Close cancels.
//   - ReportUnreachable and ReportSnapshot: only from the transport's single
//     report goroutine, never from the caller of Send. ReportUnreachable
//     follows a dropped message, a failed dial or handshake, and a lost
//     connection. ReportSnapshot(SnapshotFinish) follows the write of a
//     frame holding a MsgSnap (handed to QUIC, not yet acknowledged by the
//     peer); SnapshotFailure follows a dropped MsgSnap or a failed write.
//
// # Connections and streams
//
// The wire is QUIC with ALPN "edgekv-raft/1" and TLS 1.3 only. As in etcd's
// rafthttp, each member dials each peer and opens one long-lived
// bidirectional stream on which it sends its messages to that peer, in
// order: an outbound connection only sends messages, an inbound one only
// receives them. A writer drains everything queued for its peer into one
// frame (up to MaxFrameBytes) and writes it with one Write. A failed dial or
// write is retried after a backoff doubling from 50 ms to 2 s, with jitter.
// Keep-alives every second and a 6 s idle timeout detect dead peers; a
// stateless reset key derived from the token and member ID lets a restarted
// member reset its predecessor's connections at once.
//
// Snapshots currently travel as ordinary MsgSnap messages within the frame
// limit. They will get a stream of their own, in chunks with a CRC (issue 3),
// so that heartbeats never wait behind a snapshot.
//
// # Frames
//
// Every frame, hello or messages, is
//
//	length   u32, big-endian: the number of payload bytes
//	payload  CBOR (core/codec deterministic encoding)
//
// A message frame's payload is a CBOR array of messages. Each message is a
// CBOR array (positional, `toarray`) of
//
//	[type, to, from, term, logTerm, index, entries, commit, vote, snapshot,
//	 reject, rejectHint, context]
//	entry     = [term, index, type, data]
//	snapshot  = [data, metadata]
//	metadata  = [confState, index, term]
//	confState = [voters, learners, votersOutgoing, learnersNext, autoLeave]
//
// where an absent optional field is null, so raftpb's field presence
// survives the round trip. Message.Responses is local to a member and not
// sent. A frame longer than MaxFrameBytes (default 32 MiB), one that is not
// valid CBOR of that shape, or one with an unknown message or entry type is
// a protocol error: the receiver logs it and closes the connection with
// QUIC application error 0x5 without reading or delivering further. Messages
// whose From is not the authenticated peer, or whose To is not this member,
// are dropped. EncodeFrame and DecodeFrame are the codec; readers never
// panic on any input.
//
// # Authentication
//
// Certificates are not verified. Instead the members prove to each other
// that they know the cluster token (--initial-cluster-token), bound to the
// TLS session so the proof cannot be replayed or relayed. Right after the
// handshake the dialer opens the stream and sends a hello frame whose
// payload is the CBOR array
//
//	[from u64, to u64, clusterID u64, mac bstr(32)]
//	mac = HMAC-SHA256(key = token,
//	                  msg = ekm || role || from || to || clusterID)
//	ekm = TLS exporter: ExportKeyingMaterial("EXPORTER-edgekv-peer-auth", nil, 32)
//
// with the integers as 8-byte big-endian and role the ASCII string "dial".
// The listener checks the MAC in constant time, then that clusterID is its
// cluster, that to is its own ID and that from is a peer added with
// AddPeer, and replies with its own hello (role "accept", from and to
// swapped), which the dialer checks the same way, including that the reply
// comes from the member it meant to reach. Only then does the dialer send
// message frames. The exchange must finish within 5 s. On any failure the
// connection is closed with a QUIC application error and a reason, and a
// warning naming the remote address is logged on the refusing side:
//
//	0x1 cluster token mismatch   0x5 protocol error (bad hello or frame)
//	0x2 cluster ID mismatch      0x6 superseded by a newer connection
//	0x3 member ID mismatch       0x7 member shutting down or removed
//	0x4 unknown member
//
// A member keeps at most one inbound connection per peer: a newly
// authenticated one closes the older one with 0x6.
package transport
