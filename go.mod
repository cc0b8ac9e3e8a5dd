module github.com/usher-run/usher

go 1.26.8

require (
	github.com/go-jose/go-jose/v4 v4.1.9
	github.com/spf13/cobra v1.10.2
	go.etcd.io/bbolt v1.5.0
	sigs.k8s.io/yaml v1.6.0
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/pflag v1.0.10 // indirect
	go.yaml.in/yaml/v2 v2.4.2 // indirect
	golang.org/x/sys v0.45.0 // indirect
)
