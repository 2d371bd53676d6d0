package protocol

import (
	"encoding/json"
	"testing"
)

var sendFrame = []byte(`{"id":42,"op":"send","args":{"conv":"g:1f3a9c0b7d2e","client_msg_id":"01JD4X9Q2M8K3V7R5T1N6B0C2H","body":{"text":"see you at the crag at five?"}}}`)

// BenchmarkParseSend is the decode half of the hot path: a send frame to a
// request and its args.
func BenchmarkParseSend(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(sendFrame)))
	for b.Loop() {
		r, perr := ParseRequest(sendFrame)
		if perr != nil {
			b.Fatal(perr)
		}
		var a SendArgs
		if err := DecodeArgs(r.Args, &a); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeMessageEvent is the encode half: one message event, which
// fan-out then sends unchanged to every recipient.
func BenchmarkEncodeMessageEvent(b *testing.B) {
	m := Message{Conv: "g:1f3a9c0b7d2e", Seq: 1234, TS: 1763800000123, Sender: "alice",
		ClientMsgID: "01JD4X9Q2M8K3V7R5T1N6B0C2H", Body: json.RawMessage(`{"text":"see you at the crag at five?"}`)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeEvent(EvMessage, m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeReply encodes a send acknowledgement.
func BenchmarkEncodeReply(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeReply(42, SendResult{Conv: "g:1f3a9c0b7d2e", Seq: 1234, TS: 1763800000123}); err != nil {
			b.Fatal(err)
		}
	}
}
