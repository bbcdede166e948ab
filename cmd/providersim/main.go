// Command providersim runs a simulated OpenAI provider on loopback from a
// JSON scenario file (see internal/providersim and docs/scenarios.md):
// accounts with request limits, revoked, out-of-quota and model-limited
// keys, and scripted episodes. It prints one line per target base URL,
// then the control URL (GET /stats, POST /reset), and runs until
// interrupted. `make scenarios` uses the same simulator in-process.
//
//	providersim -config scenario.json
//	providersim -example > scenario.json
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gpt-load/gpt-load/internal/providersim"
)

func main() {
	if err := run(context.Background(), os.Args, os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "providersim:", err)
		os.Exit(1)
	}
}

// example is what -example prints: every feature once.
var example = providersim.Config{
	Models:       []string{"gpt-4o-mini", "gpt-4o"},
	Latency:      providersim.Duration(30 * time.Millisecond),
	StreamChunks: 10, StreamGap: providersim.Duration(20 * time.Millisecond),
	Accounts: []providersim.Account{
		{Name: "small", Requests: 5, Window: providersim.Duration(time.Second), Headers: true},
		{Name: "big", Requests: 50, Tokens: 10000, Window: providersim.Duration(time.Second), RetryAfter: true},
	},
	Keys: []providersim.Key{
		{Key: "sk-example-small-0000000000000001", Account: "small"},
		{Key: "sk-example-big-00000000000000002", Account: "big", DeniedModels: []string{"gpt-4o"}},
		{Key: "sk-example-revoked-000000000003", Account: "big", State: providersim.KeyRevoked},
		{Key: "sk-example-noquota-000000000004", Account: "big", State: providersim.KeyNoQuota},
	},
	Targets: 2,
	Episodes: []providersim.Episode{
		{Kind: providersim.EpisodeStorm, At: providersim.Duration(10 * time.Second), For: providersim.Duration(8 * time.Second), RetryAfter: 2},
		{Kind: providersim.EpisodeDown, Target: 1, At: providersim.Duration(30 * time.Second), For: providersim.Duration(5 * time.Second)},
		{Kind: string(providersim.FaultGateway401), Target: 0, At: providersim.Duration(40 * time.Second), For: providersim.Duration(3 * time.Second)},
	},
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("providersim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "JSON scenario file (required unless -example)")
	ex := fs.Bool("example", false, "print an example scenario file and exit")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *ex {
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		return e.Encode(example)
	}
	if *path == "" {
		fs.Usage()
		return errors.New("-config is required")
	}
	cfg, err := providersim.LoadFile(*path)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := providersim.Start(cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	for _, u := range s.URLs() {
		fmt.Fprintln(stdout, u)
	}
	fmt.Fprintln(stdout, s.ControlURL())
	<-ctx.Done()
	return nil
}
