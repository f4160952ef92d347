package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// The control protocol: one line with a command, one line back, "ok ..." or
// "error: ...", on a unix socket only the owner may open.
const (
	cmdRollingRestart = "rolling-restart"
	cmdStatus         = "status"
)

type controlRequest struct {
	cmd   string
	reply chan string
}

func replyFor(err error, ok string) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return "ok " + ok
}

// listenControl opens the control socket (mode 0600), replacing a stale one
// left by a killed process but never one that still answers.
func listenControl(path string) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s is in use: is another immut running on this data?", path)
	}
	os.Remove(path)
	old := syscall.Umask(0o077)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

func serveControl(ctx context.Context, ln net.Listener, requests chan<- controlRequest) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(io.LimitReader(c, 1024)).ReadString('\n')
			if err != nil {
				return
			}
			req := controlRequest{cmd: strings.TrimSpace(line), reply: make(chan string, 1)}
			select {
			case requests <- req:
			case <-ctx.Done():
				return
			}
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintln(c, <-req.reply)
		}()
	}
}

// RollingRestart asks the immut that listens on the control socket at path
// to replace its workers one by one, waits (up to 10 minutes) and returns
// its answer.
func RollingRestart(ctx context.Context, path string) (string, error) {
	answer, err := sendControl(ctx, path, cmdRollingRestart, 10*time.Minute)
	if err != nil {
		return "", fmt.Errorf("rolling restart: %w", err)
	}
	return answer, nil
}

// sendControl asks a running immut to do cmd and returns its answer.
func sendControl(ctx context.Context, path, cmd string, timeout time.Duration) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return "", fmt.Errorf("no running immut answers on %s: %w", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintln(c, cmd); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("waiting for the answer: %w", err)
	}
	line = strings.TrimSpace(line)
	if rest, isErr := strings.CutPrefix(line, "error: "); isErr {
		return "", errors.New(rest)
	}
	return strings.TrimPrefix(line, "ok "), nil
}
