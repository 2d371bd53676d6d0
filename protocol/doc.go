// Package protocol defines Floodgate's client protocol v1: the JSON frames a
// client and a gateway exchange over a WebSocket, the request error codes and
// the WebSocket close codes. docs/protocol.md is the normative description;
// this package is its Go form, shared by the server and the Go SDK.
//
// Every frame is one JSON object in one WebSocket text message. A client
// sends requests ([Request]); the server answers each request that carries an
// id with a [Reply] holding the same id, and pushes events ([Event]) at any
// time. Payloads are kept as [json.RawMessage] in the envelopes so a frame is
// decoded once into the envelope and once into the op-specific type.
package protocol
