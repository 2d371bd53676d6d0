package bench

import (
	"bytes"
	"strconv"
)

// parseMessageEvent reads a "message" event as the gateway encodes it
// (encoding/json of protocol.Message: conv, seq, ts, sender,
// client_msg_id, body, in that order) without decoding the JSON: in a
// room benchmark every simulated member decodes every message, and the
// tool must not become the bottleneck it measures. Ids cannot hold quotes
// or backslashes (protocol.ValidID), which is what makes the scan safe.
// Anything unexpected returns ok false, and the caller decodes properly.
func parseMessageEvent(data []byte) (m msgEvent, ok bool) {
	const head = `{"ev":"message","data":{`
	if !bytes.HasPrefix(data, []byte(head)) {
		return m, false
	}
	rest := data[len(head):]
	var s []byte
	if s, rest, ok = stringField(rest, `"conv":"`); !ok {
		return m, false
	}
	m.Conv = string(s)
	if m.Seq, rest, ok = uintField(rest, `"seq":`); !ok {
		return m, false
	}
	// The sender is absent for system messages; it comes before the body.
	bodyAt := bytes.Index(rest, []byte(`"body":`))
	if bodyAt < 0 {
		return m, false
	}
	if i := bytes.Index(rest[:bodyAt], []byte(`"sender":"`)); i >= 0 {
		if s, _, ok = stringField(rest[i:bodyAt], `"sender":"`); !ok {
			return m, false
		}
		m.Sender = string(s)
	}
	body := rest[bodyAt+len(`"body":`):]
	if bytes.HasPrefix(body, []byte(`{"t":`)) {
		if t, _, ok := uintField(body[1:], `"t":`); ok {
			m.SentNS = int64(t)
		}
	}
	return m, true
}

// stringField finds key (ending with the opening quote) and returns the
// string value after it and what follows its closing quote.
func stringField(b []byte, key string) (val, rest []byte, ok bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return nil, nil, false
	}
	b = b[i+len(key):]
	j := bytes.IndexByte(b, '"')
	if j < 0 || bytes.IndexByte(b[:j], '\\') >= 0 {
		return nil, nil, false
	}
	return b[:j], b[j+1:], true
}

// uintField finds key and returns the unsigned integer after it.
func uintField(b []byte, key string) (v uint64, rest []byte, ok bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, nil, false
	}
	b = b[i+len(key):]
	j := 0
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	if j == 0 || j > 20 {
		return 0, nil, false
	}
	v, err := strconv.ParseUint(string(b[:j]), 10, 64)
	if err != nil {
		return 0, nil, false
	}
	return v, b[j:], true
}
