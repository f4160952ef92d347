package httpapi

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/immut/immut/blobstore"
)

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	writeJSONBody(w, v)
	return nil
}

func writeJSONBody(w http.ResponseWriter, v any) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v) // the client is gone if this fails; nothing to tell it
}

// blobJSON is the answer to an upload.
type blobJSON struct {
	Hash        string `json:"hash"`
	URL         string `json:"url"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type"`
	Width       int    `json:"width,omitempty"`
	Height      int    `json:"height,omitempty"`
}

func blobView(b blobstore.Blob) blobJSON {
	return blobJSON{
		Hash:        b.Hash.String(),
		URL:         blobURL(b.Hash),
		Size:        b.Size,
		ContentType: b.ContentType,
		Width:       b.Width,
		Height:      b.Height,
	}
}

func blobURL(h blobstore.Hash) string { return "/b/" + h.String() }

// imageJSON is the answer to PUT /v1/images/{name}.
type imageJSON struct {
	blobJSON
	Name     string  `json:"name"`
	Previous *string `json:"previous"`
}

// nameJSON is the answer to GET /v1/images/{name}.
type nameJSON struct {
	Name      string      `json:"name"`
	Hash      string      `json:"hash"`
	URL       string      `json:"url"`
	UpdatedAt time.Time   `json:"updated_at"`
	History   []eventJSON `json:"history"`
}

type eventJSON struct {
	Hash     *string   `json:"hash"`
	Previous *string   `json:"previous"`
	At       time.Time `json:"at"`
}

func hashString(h *blobstore.Hash) *string {
	if h == nil {
		return nil
	}
	s := h.String()
	return &s
}
