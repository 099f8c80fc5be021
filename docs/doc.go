// Package docs holds the project's own specification: the wire protocol
// (protocol.md), the domain rules (domain.md), the HTTP and WebSocket API
// (api.md) and the architecture (architecture.md), as built. Its test
// proves that every reference the code makes into them resolves, so a clone
// alone is enough to follow them.
package docs
