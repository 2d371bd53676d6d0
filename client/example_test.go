package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/floodgate/floodgate/client"
)

// A client that prints every message and sends one. Messages arrive once
// and in order per conversation, across reconnects; Cursors is what to
// persist to resume after a restart.
func Example() {
	ctx := context.Background()
	dialCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := client.Dial(dialCtx, client.Options{
		URL: "ws://localhost:8080/v1/ws",
		App: "app_3kq9",
		Token: func(ctx context.Context) (string, error) {
			// Called before every connection: fetch a fresh token here.
			return os.Getenv("FLOODGATE_TOKEN"), nil
		},
	})
	if err != nil {
		log.Fatal(err) // a *client.CloseError if the server refused for good
	}
	defer c.Close()

	go func() {
		for ev := range c.Events() {
			switch ev.Type {
			case client.EventMessage:
				m := ev.Message
				fmt.Printf("%s #%d %s: %s\n", m.Conv, m.Seq, m.Sender, m.Body)
			case client.EventDisconnected:
				log.Printf("disconnected (%v); reconnecting", ev.State.Err)
			case client.EventStopped:
				log.Printf("stopped: %v", ev.State.Err)
			}
		}
	}()

	conv, err := c.Direct(ctx, "bob")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Send(ctx, conv.ID, map[string]string{"text": "hello"}); err != nil {
		log.Fatal(err)
	}
}

// An outbox: the message id is created and stored with the message before
// the first attempt, so a resend after a crash or a timeout is recognised
// by the server and stored once.
func ExampleClient_SendWithID() {
	var c *client.Client // from client.Dial
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	type outgoing struct {
		ID   string          `json:"id"`
		Conv string          `json:"conv"`
		Body json.RawMessage `json:"body"`
	}
	msg := outgoing{ID: client.NewClientMsgID(), Conv: "g:climbing", Body: json.RawMessage(`{"text":"5pm?"}`)}
	// … save msg in the app's storage, then:
	res, err := c.SendWithID(ctx, msg.Conv, msg.ID, msg.Body)
	if err != nil {
		return // keep it in the outbox; retry later with the same id
	}
	fmt.Println("stored as seq", res.Seq)
}

// A client of a cluster: the router says which gateway to use, and is
// asked again when that gateway sends its clients elsewhere. Its answers
// are cached, and the last one is used while the router is unavailable.
func ExampleDial_router() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{
		Router: "https://route.example.com",
		App:    "app_3kq9",
		Token: func(ctx context.Context) (string, error) {
			return os.Getenv("FLOODGATE_TOKEN"), nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
}
