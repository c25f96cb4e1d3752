package testserver

import (
	"errors"
	"fmt"
	"net"
	"sync"
)

// FlowRef is what a flow key stands for: one raw flow of a session.
type FlowRef struct {
	Session *Session
	Kind    string
	Dir     string // the direction, for tests whose flows have one
	Index   int

	used bool
}

// FlowKeys are the keys of the raw TCP flows that live sessions may open,
// for a test whose flows carry a key derived from the session's token
// (e.g. wire.FlowKey, trace.FlowKey): each key admits one connection, from
// the session's client address, while the session is active. The zero
// value is ready; it is safe for concurrent use.
type FlowKeys[K comparable] struct {
	mu   sync.Mutex
	refs map[K]*FlowRef
}

// Issue forgets the keys of the sessions that are over and adds refs.
func (fk *FlowKeys[K]) Issue(refs map[K]FlowRef) {
	fk.mu.Lock()
	defer fk.mu.Unlock()
	if fk.refs == nil {
		fk.refs = map[K]*FlowRef{}
	}
	for k, ref := range fk.refs {
		if st := ref.Session.State(); st == Done || st == Revoked {
			delete(fk.refs, k)
		}
	}
	for k, ref := range refs {
		fk.refs[k] = &ref
	}
}

// Admit returns the flow that key stands for when c may carry it: the key
// was issued and not used yet (it is used from now on), its session is
// active and c comes from the session's client address.
func (fk *FlowKeys[K]) Admit(key K, c net.Conn) (FlowRef, error) {
	fk.mu.Lock()
	ref := fk.refs[key]
	ok := ref != nil && !ref.used
	if ok {
		ref.used = true
	}
	fk.mu.Unlock()
	if !ok {
		return FlowRef{}, errors.New("unknown or used flow key")
	}
	s := ref.Session
	host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	switch {
	case s.State() != Active:
		return FlowRef{}, errors.New("the session is not active")
	case host != s.ClientAddr:
		return FlowRef{}, fmt.Errorf("flow from %s, session of %s", host, s.ClientAddr)
	}
	return *ref, nil
}
