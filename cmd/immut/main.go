// Command immut is the one binary of the immut image and blob store. Each
// subcommand is thin: flags and IMMUT_* environment variables fill a config
// struct, and a package does the work.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/client"
)

// command is one subcommand. It gets the arguments after its name and returns
// an error to print; errUsage means the flags were wrong and were explained.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

// Exit statuses, the same for every command (README, "Exit statuses").
const (
	exitFailed      = 1   // anything else; the message says what
	exitUsage       = 2   // the command line was wrong
	exitCheck       = 3   // a check failed: migrations pending, standby KO, load-test thresholds
	exitCorrupt     = 4   // verify found corrupt blobs
	exitNotFound    = 5   // the blob or name does not exist
	exitPrecondFail = 6   // a conditional update lost (the name moved meanwhile)
	exitRefused     = 7   // the server refused the content (not an image, too large, too many pixels)
	exitUnreachable = 8   // the server or database could not be reached
	exitInterrupted = 130 // stopped by SIGINT/SIGTERM
)

// exitCoder lets an error choose the exit status.
type exitCoder interface{ ExitCode() int }

// exitError carries an exit status chosen by a command, with its message.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }
func (e *exitError) ExitCode() int { return e.code }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		if len(args) > 1 { // immut help CMD is immut CMD -h
			return run([]string{args[1], "-h"}, stdout, stderr)
		}
		usage(stdout)
		return 0
	case "--version", "-version":
		args = []string{"version"}
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "immut: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := cmd.run(ctx, args[1:], stdout, stderr)
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0 // the flags were printed, as asked
	}
	if errors.Is(err, errUsage) {
		return exitUsage
	}
	code := exitCodeOf(err)
	if msg := err.Error(); msg != "" {
		fmt.Fprintf(stderr, "immut %s: %s\n", args[0], msg)
	}
	return code
}

// exitCodeOf chooses the exit status for an error (see the constants).
func exitCodeOf(err error) int {
	var ec exitCoder
	var se *client.StatusError
	var op *net.OpError
	switch {
	case errors.As(err, &ec):
		return ec.ExitCode()
	case errors.As(err, &se) && se.Code == http.StatusNotFound:
		return exitNotFound
	case errors.As(err, &se) && se.Code == http.StatusPreconditionFailed:
		return exitPrecondFail
	case errors.As(err, &se) && (se.Code == http.StatusRequestEntityTooLarge || se.Code == http.StatusUnsupportedMediaType || se.Code == http.StatusUnprocessableEntity):
		return exitRefused
	case errors.Is(err, blobstore.ErrDigestMismatch), errors.Is(err, blobstore.ErrCorrupt):
		return exitCorrupt
	case errors.As(err, &op) && op.Op == "dial", errors.Is(blobstore.Classify(err), blobstore.ErrUnavailable):
		return exitUnreachable
	}
	return exitFailed
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: immut <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'immut help <command>' (or 'immut <command> -h') for its flags. Every flag also reads IMMUT_<FLAG> from the environment.")
}
