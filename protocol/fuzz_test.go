package protocol

import (
	"encoding/json"
	"testing"
)

// FuzzParseRequest feeds arbitrary frames to the request decoder and the
// args decoders of every op: nothing may panic, and a frame that parses must
// survive re-encoding.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"id":1,"op":"auth","args":{"app":"a","token":"t"}}`,
		`{"id":2,"op":"send","args":{"conv":"c","client_msg_id":"m","body":{"text":"hi"}}}`,
		`{"id":3,"op":"sync","args":{"convs":{"c":4},"all":true,"limit":10}}`,
		`{"op":"typing","args":{"conv":"c"}}`,
		`{"id":18446744073709551615,"op":"history","args":{"conv":"c","seq":1,"direction":"after"}}`,
		`{"id":1,"op":"conv.create","args":{"kind":"group","members":["a","b"]}}`,
		`{`, `null`, `{"op":null}`, `{"args":[1,2]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, perr := ParseRequest(data)
		if perr != nil {
			if perr.Code != CodeBadFrame {
				t.Fatalf("unexpected code %s", perr.Code)
			}
			_ = EncodeError(r.ID, perr)
			return
		}
		for _, v := range []any{&AuthArgs{}, &SendArgs{}, &SyncArgs{}, &HistoryArgs{}, &CreateArgs{}, &MembersArgs{}, &ListArgs{}, &ReadArgs{}, &ConvArgs{}, &DirectArgs{}} {
			_ = DecodeArgs(r.Args, v)
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", r, err)
		}
		r2, perr := ParseRequest(b)
		if perr != nil || r2.ID != r.ID || r2.Op != r.Op {
			t.Fatalf("round trip %q -> %q: %+v %v", data, b, r2, perr)
		}
	})
}
