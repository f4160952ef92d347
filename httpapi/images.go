package httpapi

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gorilla/mux"

	"github.com/immut/immut/blobstore"
)

// nameVar reads {name} (the router keeps it percent-encoded) and returns
// its normal form (NFC; blobstore's name rules).
func nameVar(r *http.Request) (string, error) {
	name, err := url.PathUnescape(mux.Vars(r)["name"])
	if err != nil {
		return "", errors.Join(blobstore.ErrBadName, err)
	}
	return blobstore.NormalizeName(name)
}

// precondition reads If-Match / If-None-Match for a name change.
func precondition(r *http.Request) (blobstore.Precondition, error) {
	var p blobstore.Precondition
	if v := strings.TrimSpace(r.Header.Get("If-None-Match")); v != "" {
		if v != "*" {
			return p, errorf(http.StatusBadRequest, `If-None-Match on a name must be "*" (create only)`)
		}
		p.MustNotExist = true
	}
	if v := strings.TrimSpace(r.Header.Get("If-Match")); v != "" {
		if v == "*" {
			p.MustExist = true
			return p, nil
		}
		h, err := blobstore.ParseHash(strings.Trim(strings.TrimPrefix(v, "W/"), `"`))
		if err != nil {
			return p, errorf(http.StatusBadRequest, `If-Match must be "*" or "<hash>": %v`, err)
		}
		p.IfMatch = &h
	}
	return p, nil
}

func (s *Server) putImage(w http.ResponseWriter, r *http.Request) error {
	name, err := nameVar(r)
	if err != nil {
		return err
	}
	pre, err := precondition(r)
	if err != nil {
		return err
	}
	// Check the precondition before reading the body, so that a stale edit
	// is refused without storing an image nobody will point at. SetName
	// checks again, atomically.
	if pre != (blobstore.Precondition{}) {
		cur, err := s.store.ResolveName(r.Context(), name)
		var curp *blobstore.Hash
		if err == nil {
			curp = &cur
		} else if !errors.Is(err, blobstore.ErrNotFound) {
			return err
		}
		if err := checkEarly(pre, curp); err != nil {
			return err
		}
	}
	body, release, err := s.uploadBody(w, r)
	if err != nil {
		return err
	}
	b, _, err := s.store.Put(r.Context(), body, blobstore.PutOptions{ImageOnly: true})
	release()
	if err != nil {
		return err
	}
	prev, err := s.store.SetName(r.Context(), name, b.Hash, pre)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if prev == nil {
		status = http.StatusCreated
	}
	w.Header().Set("ETag", `"`+b.Hash.String()+`"`)
	w.Header().Set("Location", blobURL(b.Hash))
	pointAtRedirect(w, name)
	return writeJSON(w, status, imageJSON{blobJSON: blobView(b), Name: name, Previous: hashString(prev)})
}

// pointAtRedirect names the name's /i/ redirect, which a write makes
// obsolete, in Content-Location: a cache in front (cachefront) invalidates
// it at once, with the request's own /v1/images/{name} (RFC 9111 §4.4).
func pointAtRedirect(w http.ResponseWriter, name string) {
	w.Header().Set("Content-Location", "/i/"+url.PathEscape(name))
}

func checkEarly(p blobstore.Precondition, cur *blobstore.Hash) error {
	switch {
	case p.MustNotExist && cur != nil,
		p.MustExist && cur == nil,
		p.IfMatch != nil && (cur == nil || *cur != *p.IfMatch):
		return errorf(http.StatusPreconditionFailed, "the name has changed since you read it (If-Match/If-None-Match failed)")
	}
	return nil
}

func (s *Server) getImage(w http.ResponseWriter, r *http.Request) error {
	name, err := nameVar(r)
	if err != nil {
		return err
	}
	rec, err := s.store.LookupName(r.Context(), name)
	if err != nil {
		return err
	}
	out := nameJSON{Name: rec.Name, Hash: rec.Hash.String(), URL: blobURL(rec.Hash), UpdatedAt: rec.UpdatedAt, History: []eventJSON{}}
	for _, e := range rec.History {
		out.History = append(out.History, eventJSON{Hash: hashString(e.Hash), Previous: hashString(e.Previous), At: e.At})
	}
	w.Header().Set("ETag", `"`+rec.Hash.String()+`"`)
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteImage(w http.ResponseWriter, r *http.Request) error {
	name, err := nameVar(r)
	if err != nil {
		return err
	}
	pre, err := precondition(r)
	if err != nil {
		return err
	}
	prev, err := s.store.DeleteName(r.Context(), name, pre)
	if err != nil {
		return err
	}
	pointAtRedirect(w, name)
	return writeJSON(w, http.StatusOK, map[string]string{"name": name, "previous": prev.String()})
}

func (s *Server) redirect(w http.ResponseWriter, r *http.Request) error {
	name, err := nameVar(r)
	if err != nil {
		return err
	}
	h, err := s.store.ResolveName(r.Context(), name)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(int(s.cfg.RedirectMaxAge.Seconds())))
	if s.cfg.RedirectFrontMaxAge > 0 {
		w.Header().Set("CDN-Cache-Control", "max-age="+strconv.Itoa(int(s.cfg.RedirectFrontMaxAge.Seconds())))
	}
	w.Header().Set("Location", blobURL(h))
	w.WriteHeader(http.StatusFound)
	return nil
}
