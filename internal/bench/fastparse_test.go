package bench

import (
	"encoding/json"
	"testing"

	"github.com/floodgate/floodgate/protocol"
)

func TestParseMessageEventMatchesTheServersEncoding(t *testing.T) {
	for _, tc := range []struct {
		msg  protocol.Message
		want msgEvent
	}{
		{protocol.Message{Conv: "d:5b1e", Seq: 42, TS: 1763800000123, Sender: "b1-u7", ClientMsgID: "b1-s0-9",
			Body: json.RawMessage(`{"t":1763800000123456789,"p":"xxxx"}`)},
			msgEvent{Conv: "d:5b1e", Seq: 42, Sender: "b1-u7", SentNS: 1763800000123456789}},
		// A system message has no sender; a body the bench did not write
		// has no timestamp.
		{protocol.Message{Conv: "g:1", Seq: 1, TS: 1, Body: json.RawMessage(`{"text":"hi","t":5}`)},
			msgEvent{Conv: "g:1", Seq: 1}},
		{protocol.Message{Conv: "r:x", Seq: 18446744073709551615, Sender: "a", Body: json.RawMessage(`"plain"`)},
			msgEvent{Conv: "r:x", Seq: 18446744073709551615, Sender: "a"}},
	} {
		frame, err := protocol.EncodeEvent(protocol.EvMessage, tc.msg)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := parseMessageEvent(frame)
		if !ok || got != tc.want {
			t.Errorf("%s:\ngot  %+v (%v)\nwant %+v", frame, got, ok, tc.want)
		}
	}
}

func TestParseMessageEventDeclinesOthers(t *testing.T) {
	for _, frame := range []string{
		`{"id":3,"result":{"conv":"d:1","seq":4,"ts":5}}`,
		`{"ev":"read","data":{"conv":"d:1","user":"a","seq":3}}`,
		`{"ev":"message","data":{"seq":1,"conv":"d:1","body":{}}}`, // another field order
		`{"ev":"message","data":{"conv":"d:\"1","seq":1,"body":{}}}`,
		`{"ev":"message","data":{"conv":"d:1","seq":-1,"body":{}}}`,
		`{"ev":"message","data":{"conv":"d:1","seq":1}}`,
	} {
		if m, ok := parseMessageEvent([]byte(frame)); ok {
			t.Errorf("%s parsed as %+v; the fast path must decline what it does not expect", frame, m)
		}
	}
}
