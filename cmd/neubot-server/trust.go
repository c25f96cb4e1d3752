package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/neubot/neubot/collector"
	"github.com/neubot/neubot/internal/cli"
	"github.com/neubot/neubot/internal/identity"
	"github.com/neubot/neubot/proto/rendezvous"
	"github.com/neubot/neubot/publish"
)

// trustFlags are the collector's identity, allow-list, pseudonym secret and
// abuse limits (spec/trust.md).
type trustFlags struct {
	keyFile, enrolled, secretFile *string
	addrRate, agentRate           *float64
	addrBurst, agentBurst         *int
}

// addTrustFlags adds them; their files default to the directory that
// holds the spool (the collector's data directory), see defaults.
func addTrustFlags(fs *flag.FlagSet) trustFlags {
	return trustFlags{
		keyFile:    fs.String("key-file", "", "the collector's Ed25519 identity, made on first start (published at /api/v1/identity); default: neubot-collector-key beside --spool-dir"),
		enrolled:   fs.String("enrolled", "", "allow-list of test servers: \"<public key> <server id>\" per line, written by `neubot-server enroll`; read again when it changes; missing or empty: no test server is admitted; default: neubot-collector-enrolled.txt beside --spool-dir"),
		secretFile: fs.String("pseudonym-secret-file", "", "secret of the published agent pseudonyms (HMAC per agent and month), made on first start; collectors of one platform share it; default: neubot-collector-pseudonym.secret beside --spool-dir"),
		addrRate:   fs.Float64("ingest-rate", collector.DefaultAddressRate, "ingest requests per second per source address (IPv6: per /64); 0: no limit"),
		addrBurst:  fs.Int("ingest-burst", collector.DefaultAddressBurst, "burst of --ingest-rate"),
		agentRate:  fs.Float64("agent-rate", collector.DefaultAgentRate, "ingest requests per second per agent_id; 0: no limit"),
		agentBurst: fs.Int("agent-burst", collector.DefaultAgentBurst, "burst of --agent-rate"),
	}
}

type trust struct {
	key      *identity.Key
	enrolled *identity.AllowList
	secret   []byte
	limits   collector.Limits
}

// defaults fills the files not given with their places beside spoolDir.
func (t trustFlags) defaults(spoolDir string) trustFlags {
	dir := filepath.Dir(filepath.Clean(spoolDir))
	for p, name := range map[*string]string{t.keyFile: "key", t.enrolled: "enrolled.txt", t.secretFile: "pseudonym.secret"} {
		if *p == "" {
			*p = filepath.Join(dir, "neubot-collector-"+name)
		}
	}
	return t
}

func (t trustFlags) load(log *slog.Logger) (trust, error) {
	key, err := identity.LoadOrCreate(*t.keyFile)
	if err != nil {
		return trust{}, err
	}
	allow, err := identity.OpenAllowList(*t.enrolled)
	if err != nil {
		return trust{}, fmt.Errorf("--enrolled: %w", err)
	}
	if allow.Len() == 0 {
		log.Warn("no test server is enrolled: none can register, and no record is verified until one is (neubot-server enroll)", "enrolled", *t.enrolled)
	}
	secret, err := loadOrCreateSecret(*t.secretFile)
	if err != nil {
		return trust{}, err
	}
	if *t.addrRate < 0 || *t.agentRate < 0 || *t.addrBurst < 1 || *t.agentBurst < 1 {
		return trust{}, errors.New("--ingest-rate and --agent-rate must not be negative, their bursts at least 1")
	}
	log.Info("collector identity", "key", key.Public(), "enrolled_servers", allow.Len())
	return trust{key: key, enrolled: allow, secret: secret,
		limits: collector.Limits{AddressRate: *t.addrRate, AddressBurst: *t.addrBurst, AgentRate: *t.agentRate, AgentBurst: *t.agentBurst}}, nil
}

// loadOrCreateSecret reads a secret of at least 16 bytes in hex from path,
// or, when the file does not exist, makes one of 32 random bytes and writes
// it there (mode 0600): the collector's pseudonym secret and the analytics'
// draw key.
func loadOrCreateSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		s, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(s) < 16 {
			return nil, fmt.Errorf("%s: not a secret of at least 16 bytes in hex", path)
		}
		return s, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	s := make([]byte, 32)
	if _, err := rand.Read(s); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte(hex.EncodeToString(s)+"\n"), 0o600); err != nil {
		return nil, err
	}
	return s, nil
}

func cmdEnroll(args []string) error {
	fs := newFlagSet("enroll", "Enroll a test server: add its public key and server id to the collector's allow-list\n(--enrolled of `collector`), which the collector reads again within a second. Give the key\nitself (--key, printed by the test server at start) or its key file (--key-file; made if missing).")
	enrolled := fs.String("enrolled", "neubot-collector-enrolled.txt", "the collector's allow-list file")
	key := fs.String("key", "", "the test server's public key (43 base64url characters)")
	keyFile := fs.String("key-file", "", "the test server's key file (instead of --key)")
	id := fs.String("id", "", "the server id the key may register and sign records as (its --id)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if (*key == "") == (*keyFile == "") || *id == "" {
		fmt.Fprintln(fs.Output(), "enroll: give --id and one of --key or --key-file")
		return cli.ErrUsage
	}
	pub := *key
	if *keyFile != "" {
		k, err := identity.LoadOrCreate(*keyFile)
		if err != nil {
			return err
		}
		pub = k.Public()
	}
	added, err := identity.Enroll(*enrolled, pub, *id)
	if err != nil {
		return err
	}
	if added {
		fmt.Printf("%s: enrolled %s as %s in %s\n", prog, pub, *id, *enrolled)
	} else {
		fmt.Printf("%s: %s was already enrolled as %s in %s\n", prog, pub, *id, *enrolled)
	}
	return nil
}

func cmdVerify(args []string) error {
	fs := newFlagSet("verify", "Verify downloaded days of the open data: each DIR holds a day's manifest.json, its signature\n("+identity.ManifestSigName+") and the data files. The signature must be the collector's (--key, as the\noperator publishes it, or the key the collector's "+rendezvous.IdentityPath+" answers, --collector),\nand every file must have the size and SHA-256 the signed manifest gives.\nUsage: verify (--key KEY | --collector URL) DIR...")
	key := fs.String("key", "", "the collector's public key (43 base64url characters)")
	collectorURL := fs.String("collector", "", "take the key from this collector's "+rendezvous.IdentityPath+" (instead of --key)")
	if err := cli.Parse(fs, envPrefix, args); err != nil {
		return cli.ErrUsage
	}
	if (*key == "") == (*collectorURL == "") || fs.NArg() == 0 {
		fmt.Fprintln(fs.Output(), "verify: give one of --key or --collector, and at least one day's directory")
		return cli.ErrUsage
	}
	if *collectorURL != "" {
		k, err := fetchCollectorKey(*collectorURL)
		if err != nil {
			return err
		}
		*key = k
	}
	pub, err := identity.DecodeKey(*key)
	if err != nil {
		return fmt.Errorf("--key: %w", err)
	}
	failed := 0
	for _, dir := range fs.Args() {
		m, err := publish.VerifyDay(dir, pub)
		if err != nil {
			fmt.Printf("%s: NOT VERIFIED: %v\n", dir, err)
			failed++
			continue
		}
		fmt.Printf("%s: verified: %s %s, %d rows, %d files signed by %s\n", dir, m.Test, m.Day, m.Rows, len(m.Files), *key)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d days do not verify", failed, fs.NArg())
	}
	return nil
}

// fetchCollectorKey reads the collector's public key from its identity
// endpoint.
func fetchCollectorKey(base string) (string, error) {
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(strings.TrimSuffix(base, "/") + rendezvous.IdentityPath)
	if err != nil {
		return "", fmt.Errorf("--collector: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("--collector: %s answered %d", rendezvous.IdentityPath, resp.StatusCode)
	}
	var id rendezvous.CollectorIdentity
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&id); err != nil {
		return "", fmt.Errorf("--collector: %s: %w", rendezvous.IdentityPath, err)
	}
	return id.Key, nil
}
