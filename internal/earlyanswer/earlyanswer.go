// Package earlyanswer lets an HTTP/1 client read the answer a server sent
// before it read all of a request's body.
//
// A server that refuses an upload early (401 for a wrong token, 413 for a
// body too large) answers and closes the connection with the rest of the
// body unread, which resets it under the client's writes. net/http's
// Transport then returns whichever of the write error and the answer it
// already read it sees first, at random (golang/go#11745): the caller gets
// "connection reset by peer" for what was a 401. A connection from Dialer
// holds a write error back for Delay, so that the answer, which arrived
// before the reset, wins; a server that failed without answering still
// fails the request, Delay later.
package earlyanswer

import (
	"context"
	"net"
	"time"
)

// Delay is how long a write error is held back: enough for the
// transport's reader to hand over an answer already received.
const Delay = 200 * time.Millisecond

// Dialer returns a DialContext for http.Transport whose connections hold
// write errors back; d dials.
func Dialer(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return conn{c}, nil
	}
}

type conn struct{ net.Conn }

func (c conn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		time.Sleep(Delay)
	}
	return n, err
}
