// Package compose holds the compose cluster: docker-compose.yml runs three bankd nodes speaking
// mutual TLS, a regtest btcd they follow and the pool of three lnd nodes the leader drives, all
// from the FROM-scratch images of deploy/images (`make images`), and init.sh makes the secrets
// and configuration it reads (docs/CONTAINERS.md).
//
// The package has no code of its own; its test brings the cluster up in Docker under a project
// name of its own, moves money through the API, kills the leader's container and checks that the
// cluster elects another leader and carries on. It never touches containers, volumes or
// networks of any other compose project, and always takes its own down again.
package compose
