package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/zeebo/blake3"
)

// Reader reads one blob. It seeks freely and fetches only the bytes that the
// reads need.
//
// Bytes travel in pieces of a third of a chunk, each the substring of one
// chunk row. A piece, not a chunk, is the unit of buffering because pgx
// receives every row into a buffer of the next power of two above the row:
// a whole 1 MiB chunk row costs a 2 MiB driver buffer, a third of a chunk
// costs half a chunk. A sequential read keeps a ring of readRing pieces (two
// chunks): the caller consumes some while a background fetcher fills the
// others, several pieces per round trip (one pgx batch). So a download holds
// at most two chunks of its own plus half a chunk in the driver: under the
// three chunks per stream of DESIGN §8.
//
// The fetcher sends a batch only once it holds a free buffer for every piece
// in it, so the rows are read at network speed and the connection goes back
// to the pool at once: a slow client stalls its own fetcher, never a
// connection. A Range read (ReadAheadLimit) fetches exactly the pieces the
// range covers.
//
// A read from offset 0 to the end is verified: the final piece is released
// only after the hash of the whole blob matches its key, so a corrupted blob
// yields an error, never other bytes.
type Reader struct {
	s    *Store
	ctx  context.Context
	blob Blob
	geo  geometry

	off     int64
	horizon int64 // nothing at or past this is fetched ahead

	cur    []byte // the bytes of piece curIdx
	curBuf []byte // the buffer holding cur, returned to the ring when done
	curIdx int    // -1 for none

	st *stream // the running sequential fetch, or nil

	hasher   *blake3.Hasher
	hashedTo int64 // bytes fed to hasher, contiguous from 0
}

var _ io.ReadSeeker = (*Reader)(nil)

// readRing is how many pieces a sequential read buffers: two chunks.
const readRing = 2 * piecesPerChunk

// piecesPerChunk is how many pieces a chunk is fetched in. Three keeps the
// driver's buffer (the power of two above a piece) at half a chunk.
const piecesPerChunk = 3

// geometry maps blob offsets to pieces.
type geometry struct {
	size   int64
	chunk  int64 // chunk size
	piece  int64 // piece size: the first pieces of a chunk are this long
	ppc    int   // pieces per full chunk
	pieces int   // pieces in the blob
}

func newGeometry(size int64, chunkSize int) geometry {
	g := geometry{size: size, chunk: int64(chunkSize)}
	g.piece = (g.chunk + piecesPerChunk - 1) / piecesPerChunk
	g.ppc = int((g.chunk + g.piece - 1) / g.piece)
	if size > 0 {
		last := (size - 1) / g.chunk // index of the last chunk
		lastLen := size - last*g.chunk
		g.pieces = int(last)*g.ppc + int((lastLen+g.piece-1)/g.piece)
	}
	return g
}

// pieceAt is the piece holding byte off.
func (g geometry) pieceAt(off int64) int {
	c := off / g.chunk
	return int(c)*g.ppc + int((off-c*g.chunk)/g.piece)
}

// span is where piece i lives: its chunk, its offset within the chunk, its
// offset within the blob and its length.
func (g geometry) span(i int) (seq int, inChunk, off, n int64) {
	seq = i / g.ppc
	inChunk = int64(i%g.ppc) * g.piece
	off = int64(seq)*g.chunk + inChunk
	n = min(g.piece, g.chunk-inChunk, g.size-off)
	return seq, inChunk, off, n
}

// piecesBefore is the number of pieces that start before end.
func (g geometry) piecesBefore(end int64) int {
	if end >= g.size {
		return g.pieces
	}
	if end <= 0 {
		return 0
	}
	return g.pieceAt(end-1) + 1
}

// Open returns a reader for the blob, or ErrNotFound. The context bounds
// every fetch.
func (s *Store) Open(ctx context.Context, h Hash) (*Reader, error) {
	b, err := s.Stat(ctx, h)
	if err != nil {
		return nil, err
	}
	return &Reader{s: s, ctx: ctx, blob: b, geo: newGeometry(b.Size, b.chunkSize), curIdx: -1, hasher: blake3.New(), horizon: b.Size}, nil
}

// ReadAheadLimit tells the reader that nothing at or past end will be read,
// so a range read fetches exactly the pieces the range covers.
func (r *Reader) ReadAheadLimit(end int64) { r.horizon = end }

// Blob is the metadata of the blob being read.
func (r *Reader) Blob() Blob { return r.blob }

// Close stops the background fetch (waiting for a batch in flight, which
// writes into the reader's buffers) and returns the buffers to the pool.
func (r *Reader) Close() error {
	r.stopStream()
	r.dropCur()
	return nil
}

// Seek implements io.Seeker.
func (r *Reader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.off + offset
	case io.SeekEnd:
		abs = r.blob.Size + offset
	default:
		return 0, errors.New("blobstore: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("blobstore: negative position")
	}
	r.off = abs
	return abs, nil
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if r.off >= r.blob.Size {
		return 0, io.EOF
	}
	i := r.geo.pieceAt(r.off)
	if err := r.load(i); err != nil {
		return 0, err
	}
	_, _, start, _ := r.geo.span(i)
	n := copy(p, r.cur[r.off-start:])
	r.off += int64(n)
	return n, nil
}

// WriteTo writes the blob from the current offset up to the read-ahead
// limit (the end of the blob unless ReadAheadLimit moved it) straight from
// the piece buffers, saving the copy through a caller's buffer.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	end := min(r.horizon, r.blob.Size)
	var total int64
	for r.off < end {
		i := r.geo.pieceAt(r.off)
		if err := r.load(i); err != nil {
			return total, err
		}
		_, _, start, _ := r.geo.span(i)
		hi := min(int64(len(r.cur)), end-start)
		n, err := w.Write(r.cur[r.off-start : hi])
		r.off += int64(n)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// load makes piece i the current one: from the running stream when it is
// ahead of the stream's position (close enough to skip to), otherwise from a
// new stream starting at i.
func (r *Reader) load(i int) error {
	if i == r.curIdx {
		return nil
	}
	r.releaseCur()
	if st := r.st; st == nil || i < st.expect || i >= st.end || i > st.expect+readRing {
		r.stopStream()
		end := max(r.geo.piecesBefore(r.horizon), i+1)
		r.st = r.s.startStream(r.ctx, r.blob, r.geo, i, end)
	}
	st := r.st
	for {
		p, ok := <-st.out
		if !ok {
			// The fetcher ended without the piece: it reported an error first,
			// so this is unreachable; fail safe all the same.
			r.stopStream()
			return fmt.Errorf("blob %s: piece %d: fetch ended early", r.blob.Hash, i)
		}
		st.expect = p.idx + 1
		if p.err != nil {
			r.stopStream()
			return p.err
		}
		if p.idx < i {
			st.free <- p.buf // skipped over by a short forward seek
			continue
		}
		r.cur, r.curBuf, r.curIdx = p.data, p.buf, p.idx
		break
	}
	if st.expect >= st.end {
		// The stream has delivered all it was asked for; a read past it
		// (horizon moved) starts a new one.
		r.detachStream()
	}
	if err := r.verify(i); err != nil {
		r.dropCur()
		return err
	}
	return nil
}

// releaseCur hands the current piece's buffer back to the stream's ring (or
// to the pool when no stream runs).
func (r *Reader) releaseCur() {
	if r.curBuf == nil {
		r.curIdx = -1
		return
	}
	if r.st != nil {
		r.st.free <- r.curBuf
	} else {
		putPieceBuf(r.curBuf)
	}
	r.cur, r.curBuf, r.curIdx = nil, nil, -1
}

func (r *Reader) dropCur() {
	if r.curBuf != nil {
		putPieceBuf(r.curBuf)
	}
	r.cur, r.curBuf, r.curIdx = nil, nil, -1
}

// stopStream ends the running stream, if any, and returns its buffers.
func (r *Reader) stopStream() {
	if r.st == nil {
		return
	}
	// The current piece, if any, stays readable: it goes to the pool when
	// the reader moves on (releaseCur without a stream) or closes.
	r.st.stop()
	r.st = nil
}

// detachStream forgets a stream that has delivered everything: its fetcher
// has sent its last batch, so stopping it waits at most for that batch's
// tail, then the remaining buffers go to the pool.
func (r *Reader) detachStream() { r.stopStream() }

// verify feeds piece i (now current) to the running hash when the read has
// been contiguous from 0, and checks the hash at the last piece.
func (r *Reader) verify(i int) error {
	_, _, start, _ := r.geo.span(i)
	if r.hashedTo != start {
		return nil
	}
	r.hasher.Write(r.cur)
	r.hashedTo += int64(len(r.cur))
	if r.hashedTo != r.blob.Size {
		return nil
	}
	var got Hash
	copy(got[:], r.hasher.Sum(nil))
	if got != r.blob.Hash {
		return fmt.Errorf("blob %s: stored bytes hash to %s: %w", r.blob.Hash, got, ErrCorrupt)
	}
	return nil
}

// stream is a background fetch of pieces [start, end) of one blob. The
// fetcher goroutine owns the sending side of out; the reader owns expect and
// gives buffers back on free.
type stream struct {
	out  chan piece  // fetched pieces, in order; closed when the fetcher ends
	free chan []byte // buffers the reader has finished with
	quit chan struct{}
	done chan struct{}
	// allocated counts the ring's buffers wherever they are; the fetcher
	// allocates while it is below readRing.
	allocated atomic.Int32

	expect int // next piece the reader will receive
	end    int
}

type piece struct {
	idx  int
	data []byte // buf[:length]
	buf  []byte
	err  error
}

func (s *Store) startStream(ctx context.Context, b Blob, g geometry, start, end int) *stream {
	st := &stream{
		out:    make(chan piece, readRing),
		free:   make(chan []byte, readRing),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		expect: start,
		end:    end,
	}
	go st.run(ctx, s, b, g, start, end)
	return st
}

// stop tells the fetcher to end, waits for it (a batch in flight finishes:
// its rows come at network speed) and returns every buffer to the pool.
func (st *stream) stop() {
	close(st.quit)
	<-st.done
	for p := range st.out {
		if p.buf != nil {
			putPieceBuf(p.buf)
		}
	}
	for {
		select {
		case b := <-st.free:
			putPieceBuf(b)
		default:
			return
		}
	}
}

// run fetches the pieces through one connection in pipeline mode: it sends
// a query for a piece whenever it holds a free buffer for it and reads the
// results in order, so the server always has the next pieces queued (no
// round trip between them) while the reader keeps up. It sends a query only
// for a buffer it holds, so the rows in flight are always readable at
// network speed; when the reader falls a whole ring behind, the pipeline
// runs dry, the connection goes back to the pool and the fetcher waits for
// a buffer without one: a slow client never pins a connection.
func (st *stream) run(ctx context.Context, s *Store, b Blob, g geometry, next, end int) {
	defer close(st.done)
	defer close(st.out)
	lastSeq := -1
	for next < end {
		buf, ok := st.takeBuf(g, true)
		if !ok {
			return // quit
		}
		n, err := st.session(ctx, s, b, g, next, end, buf, &lastSeq)
		next += n
		if err != nil {
			st.out <- piece{idx: next, err: err}
			return
		}
		select {
		case <-st.quit:
			return
		default:
		}
	}
}

// pending is a piece whose query has been sent.
type pending struct {
	idx int
	buf []byte
}

// session holds one connection from the pool while the reader keeps up,
// starting with piece first into buf. It returns how many pieces it sent on
// out.
func (st *stream) session(ctx context.Context, s *Store, b Blob, g geometry, first, end int, buf []byte, lastSeq *int) (sent int, err error) {
	var inflight []pending
	defer func() {
		for _, p := range inflight {
			putPieceBuf(p.buf)
		}
	}()
	// Each wait for the database is bounded by the query timeout; waits for
	// the reader to free a buffer are not.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	dog := newWatchdog(s.cfg.QueryTimeout, cancel)
	defer dog.disarm()
	defer func() {
		if err != nil && errors.Is(context.Cause(ctx), errStalled) {
			err = fmt.Errorf("blob %s: reading: %w", b.Hash, errStalled)
		}
	}()
	dog.arm()
	pool := b.from
	if pool == nil {
		pool = s.pool
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		putPieceBuf(buf)
		return 0, fmt.Errorf("blob %s: reading: %w", b.Hash, err)
	}
	defer conn.Release()
	sd, err := conn.Conn().Prepare(ctx, pieceStatement, pieceQuery)
	if err != nil {
		putPieceBuf(buf)
		return 0, fmt.Errorf("blob %s: preparing the piece query: %w", b.Hash, err)
	}
	pl := conn.Conn().PgConn().StartPipeline(ctx)
	defer func() {
		// Close reads whatever is still in flight (at most a ring of
		// pieces, already paid for with buffers) and frees the connection.
		dog.arm()
		if cerr := pl.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("blob %s: reading: %w", b.Hash, cerr)
		}
	}()
	next := first
	send := func(buf []byte) {
		seq, inChunk, _, n := g.span(next)
		params := [][]byte{
			strconv.AppendInt(nil, b.id, 10),
			strconv.AppendInt(nil, int64(seq), 10),
			strconv.AppendInt(nil, inChunk+1, 10),
			strconv.AppendInt(nil, n, 10),
		}
		pl.SendQueryStatement(sd, params, nil, binaryResult)
		// Each piece is its own implicit transaction: the server flushes
		// its output at the Sync, and an error stays with its piece.
		pl.SendPipelineSync()
		inflight = append(inflight, pending{next, buf})
		if seq != *lastSeq {
			fetchCount.Add(1)
			*lastSeq = seq
		}
		next++
	}
	send(buf)
	quit := false
	for {
		// Queue a query for every buffer the reader has freed meanwhile.
		for !quit && next < end {
			select {
			case <-st.quit:
				quit = true
				continue
			default:
			}
			buf, ok := st.takeBuf(g, false)
			if !ok {
				break
			}
			send(buf)
		}
		if len(inflight) == 0 {
			return sent, nil
		}
		dog.arm()
		waited := time.Now()
		if err := pl.Flush(); err != nil {
			return sent, fmt.Errorf("blob %s: reading: %w", b.Hash, err)
		}
		p := inflight[0]
		data, err := readPiece(pl, b, g, p.idx, p.buf)
		dog.disarm()
		s.observe("read", waited, int64(len(data)))
		if err != nil {
			return sent, err
		}
		inflight = inflight[1:]
		st.out <- piece{idx: p.idx, data: data, buf: p.buf}
		sent++
	}
}

// takeBuf returns a buffer for the next piece: a freed one, a new one while
// the ring is not full, or (when wait) the next one the reader frees.
func (st *stream) takeBuf(g geometry, wait bool) ([]byte, bool) {
	select {
	case buf := <-st.free:
		return buf, true
	default:
	}
	if st.allocated.Load() < readRing {
		st.allocated.Add(1)
		return getPieceBuf(int(g.piece)), true
	}
	if !wait {
		return nil, false
	}
	select {
	case buf := <-st.free:
		return buf, true
	case <-st.quit:
		return nil, false
	}
}

// pieceStatement names the prepared piece query on each connection.
const pieceStatement = "immut_blob_piece"

// binaryResult asks for the bytea in binary: the raw bytes, not hex text.
var binaryResult = []int16{1}

// pieceQuery reads one piece. substr of an uncompressed out-of-line value
// (the chunks' STORAGE EXTERNAL) fetches only the TOAST rows of the slice.
const pieceQuery = "SELECT substr(data, $3, $4) FROM chunks WHERE blob_id = $1 AND seq = $2"

// readPiece reads the result of piece i's query, then its Sync, copying the
// bytes into buf.
func readPiece(pl *pgconn.Pipeline, b Blob, g geometry, i int, buf []byte) ([]byte, error) {
	seq, _, _, want := g.span(i)
	res, err := pl.GetResults()
	if err != nil {
		return nil, fmt.Errorf("blob %s: reading chunk %d: %w", b.Hash, seq, err)
	}
	rr, ok := res.(*pgconn.ResultReader)
	if !ok {
		return nil, fmt.Errorf("blob %s: reading chunk %d: unexpected pipeline result %T", b.Hash, seq, res)
	}
	var data []byte
	found := false
	for rr.NextRow() {
		// Values point into the driver's buffer, valid until the next
		// message: copy them out once, into the ring.
		raw := rr.Values()[0]
		if int64(len(raw)) != want {
			rr.Close()
			return nil, fmt.Errorf("blob %s: chunk %d piece has %d bytes, want %d: %w", b.Hash, seq, len(raw), want, ErrCorrupt)
		}
		data = buf[:copy(buf[:cap(buf)], raw)]
		found = true
	}
	if _, err := rr.Close(); err != nil {
		return nil, fmt.Errorf("blob %s: reading chunk %d: %w", b.Hash, seq, err)
	}
	if res, err := pl.GetResults(); err != nil {
		return nil, fmt.Errorf("blob %s: reading chunk %d: %w", b.Hash, seq, err)
	} else if _, ok := res.(*pgconn.PipelineSync); !ok {
		return nil, fmt.Errorf("blob %s: reading chunk %d: unexpected pipeline result %T", b.Hash, seq, res)
	}
	if !found {
		return nil, fmt.Errorf("blob %s: chunk %d missing (collected while reading?): %w", b.Hash, seq, ErrNotFound)
	}
	return data, nil
}

// fetchCount counts chunk reads (each chunk once per batch that reads any of
// its pieces), for tests that prove a range read fetches only what it needs.
var fetchCount atomic.Int64

// piecePools keeps piece buffers per piece size across readers, so serving
// many downloads does not churn the heap (garbage inflates the peak heap as
// much as live buffers do).
var piecePools sync.Map // int (capacity) -> *sync.Pool

func getPieceBuf(size int) []byte {
	if p, ok := piecePools.Load(size); ok {
		if b, ok := p.(*sync.Pool).Get().(*[]byte); ok {
			return (*b)[:0]
		}
	}
	return make([]byte, 0, size)
}

func putPieceBuf(b []byte) {
	size := cap(b)
	p, ok := piecePools.Load(size)
	if !ok {
		p, _ = piecePools.LoadOrStore(size, &sync.Pool{})
	}
	b = b[:0]
	p.(*sync.Pool).Put(&b)
}

// errStalled is what a wait for the database that outlived the query
// timeout returns: a deadline, for the HTTP layer a 503.
var errStalled = fmt.Errorf("the database did not answer within the query timeout: %w", context.DeadlineExceeded)

// watchdog cancels a context (with errStalled) when an armed wait lasts
// longer than its timeout. A negative timeout never fires.
type watchdog struct {
	t *time.Timer
	d time.Duration
}

func newWatchdog(d time.Duration, cancel context.CancelCauseFunc) *watchdog {
	w := &watchdog{d: d}
	if d > 0 {
		w.t = time.AfterFunc(time.Hour, func() { cancel(errStalled) })
		w.t.Stop()
	}
	return w
}

func (w *watchdog) arm() {
	if w.t != nil {
		w.t.Reset(w.d)
	}
}

func (w *watchdog) disarm() {
	if w.t != nil {
		w.t.Stop()
	}
}
