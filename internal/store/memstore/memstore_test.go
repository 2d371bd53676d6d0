package memstore_test

import (
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/store"
	"github.com/floodgate/floodgate/internal/store/memstore"
	"github.com/floodgate/floodgate/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return memstore.New(memstore.Options{}) })
}

func TestConformanceClocked(t *testing.T) {
	storetest.RunClocked(t, func(t *testing.T, now func() time.Time) store.Store {
		return memstore.New(memstore.Options{Now: now})
	})
}
