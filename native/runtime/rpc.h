// ggml's RPC backend: remote devices for a model's layers (loadModel's `rpc` option) and the
// server that offers this machine's devices to others (`specdec rpc-server`).
//
// ggml-rpc aborts the process when it cannot connect or the handshake fails, so every endpoint is
// probed here first (TCP connect and the protocol's HELLO, each with a timeout) and its failures
// become typed errors: ERR_INVALID_OPTION (not host:port), ERR_RPC_UNREACHABLE (no answer),
// ERR_RPC_PROTOCOL (an answer that is not a compatible ggml RPC server).
#pragma once

#include "ggml-backend.h"

#include <memory>
#include <string>
#include <vector>

namespace specdec {

struct rpc_endpoint {
    std::string host;
    int         port = 0;
};

// "host:port" (an IPv4 address or a name, as ggml-rpc reads it); throws ERR_INVALID_OPTION.
rpc_endpoint rpc_parse_endpoint(const std::string & s);

// Connects, sends HELLO and checks the server's protocol version; throws the typed errors above.
// A server serves one client at a time: one busy with another client answers nothing (unreachable,
// said so in the message).
void rpc_probe(const std::string & endpoint, int timeout_ms = 5000);

// The devices of the RPC servers at `endpoints`, in order, each probed first unless a live model of
// this process uses it already. `leases` gets one token per endpoint, for the model to hold while its
// buffers live there (what tells a later load that the connection is up).
std::vector<ggml_backend_dev_t> rpc_devices(const std::vector<std::string> & endpoints, std::vector<std::shared_ptr<void>> & leases);

// Runs ggml's RPC server on host:port with this build's devices (the GPUs when there are any, else
// the CPU with n_threads threads). Blocks while it serves; returns only when it cannot start
// (ERR_RPC_SERVER).
void rpc_serve(const std::string & endpoint, int n_threads);

} // namespace specdec
