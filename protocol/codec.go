package protocol

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// ParseRequest decodes one client frame. It fails with a bad_frame Error
// when data is not a JSON object with a string op; the returned Request
// still carries the id when it could be read, so the error can be matched
// to the request.
func ParseRequest(data []byte) (Request, *Error) {
	var r Request
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return r, &Error{Code: CodeBadFrame, Message: "frame is not a JSON object"}
	}
	if err := json.Unmarshal(data, &r); err != nil {
		// The id may still be readable if only another field is wrong.
		var idOnly struct {
			ID uint64 `json:"id"`
		}
		_ = json.Unmarshal(data, &idOnly)
		r.ID = idOnly.ID
		return r, &Error{Code: CodeBadFrame, Message: "invalid JSON frame: " + err.Error()}
	}
	if r.Op == "" {
		return r, &Error{Code: CodeBadFrame, Message: "frame has no op"}
	}
	return r, nil
}

// DecodeArgs decodes a request's args into v. Missing args decode as an
// empty object.
func DecodeArgs(args json.RawMessage, v any) *Error {
	if len(args) == 0 || string(args) == "null" {
		return nil
	}
	if err := json.Unmarshal(args, v); err != nil {
		return &Error{Code: CodeBadRequest, Message: "invalid args: " + err.Error()}
	}
	return nil
}

// AppendReply appends a reply frame with the already-encoded result.
func AppendReply(dst []byte, id uint64, result []byte) []byte {
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, `,"result":`...)
	if len(result) == 0 {
		result = []byte("{}")
	}
	dst = append(dst, result...)
	return append(dst, '}')
}

// EncodeReply returns a reply frame carrying v as result.
func EncodeReply(id uint64, v any) ([]byte, error) {
	res, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return AppendReply(make([]byte, 0, len(res)+32), id, res), nil
}

// EncodeError returns a reply frame carrying e.
func EncodeError(id uint64, e *Error) []byte {
	b, _ := json.Marshal(Reply{ID: id, Error: e}) // a Reply of strings cannot fail to encode
	return b
}

// AppendEvent appends an event frame with already-encoded data.
func AppendEvent(dst []byte, ev string, data []byte) []byte {
	dst = append(dst, `{"ev":`...)
	dst = strconv.AppendQuote(dst, ev)
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	return append(dst, '}')
}

// EncodeEvent returns an event frame carrying v as data.
func EncodeEvent(ev string, v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return AppendEvent(make([]byte, 0, len(data)+len(ev)+16), ev, data), nil
}
