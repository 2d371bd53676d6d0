package protocol

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		in     string
		wantOp string
		wantID uint64
		code   string
	}{
		{`{"id":1,"op":"ping"}`, "ping", 1, ""},
		{` {"op":"typing","args":{"conv":"c"}} `, "typing", 0, ""},
		{`{"id":7,"op":"send","args":{"conv":"c","client_msg_id":"m","body":{"t":1}},"extra":true}`, "send", 7, ""},
		{``, "", 0, CodeBadFrame},
		{`[]`, "", 0, CodeBadFrame},
		{`"x"`, "", 0, CodeBadFrame},
		{`{"id":3}`, "", 3, CodeBadFrame},
		{`{"id":4,"op":5}`, "", 4, CodeBadFrame},
		{`{"id":-1,"op":"ping"}`, "", 0, CodeBadFrame},
		{`{"id":1,"op":"ping"`, "", 0, CodeBadFrame},
		{"\xff\xfe", "", 0, CodeBadFrame},
	}
	for _, tt := range tests {
		r, err := ParseRequest([]byte(tt.in))
		if tt.code == "" {
			if err != nil || r.Op != tt.wantOp || r.ID != tt.wantID {
				t.Errorf("ParseRequest(%q) = %+v, %v", tt.in, r, err)
			}
			continue
		}
		if err == nil || err.Code != tt.code || r.ID != tt.wantID {
			t.Errorf("ParseRequest(%q) = %+v, %v; want code %s id %d", tt.in, r, err, tt.code, tt.wantID)
		}
	}
}

func TestEncode(t *testing.T) {
	b, err := EncodeReply(9, SendResult{Conv: "c", Seq: 3, TS: 5})
	if err != nil || string(b) != `{"id":9,"result":{"conv":"c","seq":3,"ts":5}}` {
		t.Fatalf("EncodeReply = %s, %v", b, err)
	}
	if got := string(EncodeError(2, &Error{Code: CodeForbidden, Message: "no"})); got != `{"id":2,"error":{"code":"forbidden","message":"no"}}` {
		t.Fatalf("EncodeError = %s", got)
	}
	ev, err := EncodeEvent(EvTyping, TypingEvent{Conv: "c", User: "u"})
	if err != nil {
		t.Fatal(err)
	}
	var f Frame
	if err := json.Unmarshal(ev, &f); err != nil || f.Ev != EvTyping || !strings.Contains(string(f.Data), `"user":"u"`) {
		t.Fatalf("EncodeEvent = %s, %v", ev, err)
	}
}

func TestCloseAction(t *testing.T) {
	for code, want := range map[int]string{
		1000: AfterReconnect, 1001: AfterReconnect, 1006: AfterBackoff, 1009: AfterBackoff,
		4000: AfterReconnect, 4099: AfterReconnect, 4100: AfterBackoff, 4150: AfterBackoff,
		4200: AfterRedirect, 4300: AfterRefresh, 4301: AfterRefresh, 4400: AfterStop, 4499: AfterStop,
		4500: AfterBackoff, 3000: AfterBackoff,
	} {
		if got := CloseAction(code); got != want {
			t.Errorf("CloseAction(%d) = %s, want %s", code, got, want)
		}
	}
	for _, c := range []string{CodeTokenInvalid, CodeTokenWrongApp, CodeAppNotFound, CodeAppDisabled} {
		if CloseAction(AuthCloseCode(c)) != AfterStop {
			t.Errorf("%s does not stop the client", c)
		}
	}
	for _, c := range []string{CodeTokenExpired, CodeTokenRevoked} {
		if CloseAction(AuthCloseCode(c)) != AfterRefresh {
			t.Errorf("%s does not refresh the token", c)
		}
	}
}

func TestValidID(t *testing.T) {
	for _, ok := range []string{"a", "alice@example.com", "d:12ab", "A-b_c.d", strings.Repeat("x", MaxIDLen)} {
		if !ValidID(ok) {
			t.Errorf("ValidID(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", "a b", "a*", "a>", "é", "a\x00", strings.Repeat("x", MaxIDLen+1)} {
		if ValidID(bad) {
			t.Errorf("ValidID(%q) = true", bad)
		}
	}
}
