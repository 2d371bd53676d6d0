package client

import (
	"errors"
	"strconv"
	"time"

	"github.com/floodgate/floodgate/protocol"
)

var (
	// ErrClosed is returned by every call made after Close, and by calls
	// that were pending when Close was called.
	ErrClosed = errors.New("floodgate: client closed")

	// ErrConnectionLost is returned by a call that is not safe to repeat
	// (creating a group, adding or removing members, leaving, or any op sent
	// with Call) when the connection broke after the request was written
	// and before its reply arrived: the server may or may not have carried
	// it out. The application decides whether to check (Conversation, for
	// instance) and retry. Calls that are safe to repeat are resent on the
	// next connection instead and never return this error.
	ErrConnectionLost = errors.New("floodgate: connection lost before the reply; the outcome is unknown")
)

// CloseError reports that the server ended the session for good: a "stop"
// directive, a close code in the 4400–4499 range, or a refused auth that
// implies one (token_invalid, token_wrong_app, app_not_found,
// app_disabled). Dial returns it, the EventStopped event carries it, and
// every call fails with it afterwards. When the stop followed a refused
// auth, errors.As(err, &*protocol.Error) also finds the auth error.
type CloseError struct {
	// Code is the WebSocket close code (or the one the auth error implies
	// when the close frame was not received).
	Code int
	// Reason is the close reason or the directive's reason.
	Reason string
	// Directive is the directive that preceded the close, if one arrived.
	Directive *protocol.Directive
	// Auth is the error reply to auth, if the stop followed a refused auth.
	Auth *protocol.Error
}

// Error describes the stop.
func (e *CloseError) Error() string {
	s := "floodgate: stopped by the server (close " + strconv.Itoa(e.Code)
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	s += ")"
	if e.Auth != nil {
		s += ": " + e.Auth.Error()
	}
	return s
}

// Unwrap returns the auth error, if any.
func (e *CloseError) Unwrap() error {
	if e.Auth == nil {
		return nil
	}
	return e.Auth
}

// statusError is an HTTP refusal of the WebSocket upgrade.
type statusError struct {
	status     int
	retryAfter int64 // seconds; -1 when absent
}

func (e *statusError) Error() string {
	s := "floodgate: upgrade refused with HTTP " + strconv.Itoa(e.status)
	if e.retryAfter >= 0 {
		s += " (Retry-After " + strconv.FormatInt(e.retryAfter, 10) + "s)"
	}
	return s
}

// routerError is a router's refusal to give a route (any status but 200).
type routerError struct {
	status     int
	retryAfter time.Duration // Retry-After (or retry_after_ms); 0 when absent
	err        *protocol.Error
}

func (e *routerError) Error() string {
	s := "floodgate: router answered HTTP " + strconv.Itoa(e.status)
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	if e.retryAfter > 0 {
		s += " (Retry-After " + e.retryAfter.String() + ")"
	}
	return s
}

// Unwrap returns the router's error body, if it had one.
func (e *routerError) Unwrap() error {
	if e.err == nil {
		return nil
	}
	return e.err
}
