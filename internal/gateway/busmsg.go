package gateway

import (
	"encoding/binary"
	"encoding/json"
)

// Messages between gateway nodes on the bus start with one type byte. Only
// gateways read them; clients see the frames inside msgFrame.
const (
	// msgFrame: 8 bytes (big-endian id of a session to skip, 0 for none),
	// then a complete client frame, forwarded as is to every local follower
	// of the topic — encoded once by the sender, never re-encoded.
	msgFrame = 'F'
	// msgKick: JSON kick; closes the user's sessions (User topics).
	msgKick = 'K'
	// msgConv: a conversation id whose membership changed (App topics).
	msgConv = 'C'
	// msgApp: JSON appChange; the app was disabled or its secret changed
	// (App topics).
	msgApp = 'A'
	// msgPresence: JSON presenceChange (Presence topics).
	msgPresence = 'P'
)

type kick struct {
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

type appChange struct {
	Disabled bool `json:"disabled"`
}

type presenceChange struct {
	Node   string `json:"node"`
	Online bool   `json:"online"`
}

// presenceQuery asks every node which of Users have a connection there; the
// answer is a presenceAnswer.
type presenceQuery struct {
	App   string   `json:"app"`
	Users []string `json:"users"`
}

type presenceAnswer struct {
	Node   string   `json:"node"`
	Online []string `json:"online"`
}

func frameMsg(skip uint64, frame []byte) []byte {
	b := make([]byte, 9, 9+len(frame))
	b[0] = msgFrame
	binary.BigEndian.PutUint64(b[1:9], skip)
	return append(b, frame...)
}

func jsonMsg(typ byte, v any) []byte {
	b, _ := json.Marshal(v) // plain structs of strings and bools
	return append([]byte{typ}, b...)
}
