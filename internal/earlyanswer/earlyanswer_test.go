package earlyanswer

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// refusingServer answers every upload with 401 after reading 64 KiB of it,
// then resets the connection with the rest unread, as a server refusing
// a wrong token does.
func refusingServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				io.CopyN(io.Discard, req.Body, 64<<10)
				io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
				c.(*net.TCPConn).SetLinger(0)
			}(c)
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestEarlyAnswerWins: every refused upload reports the server's 401.
// (With net/http's own dialer, some report "connection reset by peer".)
func TestEarlyAnswerWins(t *testing.T) {
	url := refusingServer(t)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: Dialer(&net.Dialer{})}}
	body := bytes.Repeat([]byte("x"), 8<<20)
	for i := range 30 {
		resp, err := client.Post(url, "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("upload %d: %v, want the server's 401", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("upload %d: %d, want 401", i, resp.StatusCode)
		}
	}
}
