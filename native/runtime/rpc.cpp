#include "runtime/rpc.h"
#include "common/error.h"
#include "runtime/backends.h"

#include "ggml-rpc.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>

#if !defined(_WIN32)
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

namespace specdec {

rpc_endpoint rpc_parse_endpoint(const std::string & s) {
    rpc_endpoint e;
    // ggml-rpc reads "host:port" up to the first colon: IPv4 addresses and host names only
    const size_t colon = s.find(':');
    const std::string host = colon == std::string::npos ? "" : s.substr(0, colon);
    const std::string port = colon == std::string::npos ? "" : s.substr(colon + 1);
    bool digits = !port.empty() && port.size() <= 5;
    for (char c : port) digits = digits && c >= '0' && c <= '9';
    if (host.empty() || !digits || std::stoi(port) < 1 || std::stoi(port) > 65535) {
        fail("ERR_INVALID_OPTION", format("rpc endpoint '%s' is not host:port (an IPv4 address or a host name, e.g. 192.168.1.2:50052)", s.c_str()));
    }
    e.host = host;
    e.port = std::stoi(port);
    return e;
}

#if !defined(_WIN32)

namespace {

// A socket closed on every path.
struct fd_guard {
    int fd = -1;
    ~fd_guard() { if (fd >= 0) close(fd); }
};

using clock_type = std::chrono::steady_clock;

#if defined(MSG_NOSIGNAL)
constexpr int send_flags = MSG_NOSIGNAL;  // a closed peer is an error, not SIGPIPE
#else
constexpr int send_flags = 0;             // macOS: SO_NOSIGPIPE on the socket instead
#endif

int ms_left(clock_type::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()).count();
    return left > 0 ? (int) left : 0;
}

// false on timeout or error (errno set)
bool wait_for(int fd, short events, clock_type::time_point deadline) {
    for (;;) {
        pollfd p = { fd, events, 0 };
        const int r = poll(&p, 1, ms_left(deadline));
        if (r > 0) return true;
        if (r == 0) { errno = ETIMEDOUT; return false; }
        if (errno != EINTR) return false;
    }
}

bool send_all(int fd, const void * data, size_t n, clock_type::time_point deadline) {
    const char * p = (const char *) data;
    while (n > 0) {
        if (!wait_for(fd, POLLOUT, deadline)) return false;
        const ssize_t w = send(fd, p, n, send_flags);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (w <= 0) return false;
        p += w;
        n -= (size_t) w;
    }
    return true;
}

// false with errno 0 when the peer closed the connection
bool recv_all(int fd, void * data, size_t n, clock_type::time_point deadline) {
    char * p = (char *) data;
    while (n > 0) {
        if (!wait_for(fd, POLLIN, deadline)) return false;
        const ssize_t r = recv(fd, p, n, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (r == 0) errno = 0;
        if (r <= 0) return false;
        p += r;
        n -= (size_t) r;
    }
    return true;
}

} // namespace

void rpc_probe(const std::string & endpoint, int timeout_ms) {
    const rpc_endpoint e = rpc_parse_endpoint(endpoint);
    const auto deadline = clock_type::now() + std::chrono::milliseconds(timeout_ms);

    addrinfo hints = {};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo * res = nullptr;
    const int gai = getaddrinfo(e.host.c_str(), std::to_string(e.port).c_str(), &hints, &res);
    if (gai != 0 || !res) {
        fail("ERR_RPC_UNREACHABLE", format("rpc server %s: cannot resolve '%s': %s", endpoint.c_str(), e.host.c_str(), gai_strerror(gai)));
    }
    fd_guard s;
    std::string why = "no address";
    for (addrinfo * a = res; a; a = a->ai_next) {
        fd_guard c;
        c.fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (c.fd < 0) { why = strerror(errno); continue; }
        fcntl(c.fd, F_SETFD, FD_CLOEXEC);
#if defined(SO_NOSIGPIPE)
        int one = 1;
        setsockopt(c.fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
        fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL, 0) | O_NONBLOCK);
        if (connect(c.fd, a->ai_addr, a->ai_addrlen) != 0) {
            if (errno != EINPROGRESS) { why = strerror(errno); continue; }
            if (!wait_for(c.fd, POLLOUT, deadline)) { why = errno == ETIMEDOUT ? "connection timed out" : strerror(errno); continue; }
            int err = 0;
            socklen_t len = sizeof(err);
            getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0) { why = strerror(err); continue; }
        }
        s.fd = c.fd;
        c.fd = -1;
        break;
    }
    freeaddrinfo(res);
    if (s.fd < 0) {
        fail("ERR_RPC_UNREACHABLE", format("rpc server %s is unreachable: %s (is `specdec rpc-server` running there?)", endpoint.c_str(), why.c_str()));
    }

    // HELLO, as the protocol frames a command: | command (1 byte) | size (8 bytes, little-endian) |
    // payload |, the payload being the client's transport capabilities (zeros: plain TCP). The
    // answer is | size (8 bytes) | major | minor | patch | padding | capabilities |.
    constexpr uint8_t cmd_hello = 14;
    constexpr size_t caps_size = 24;
    uint8_t req[1 + 8 + caps_size] = {};
    req[0] = cmd_hello;
    const uint64_t req_size = caps_size;
    memcpy(req + 1, &req_size, sizeof(req_size));
    if (!send_all(s.fd, req, sizeof(req), deadline)) {
        fail("ERR_RPC_UNREACHABLE", format("rpc server %s: cannot send the handshake: %s", endpoint.c_str(), strerror(errno)));
    }
    uint64_t rsp_size = 0;
    if (!recv_all(s.fd, &rsp_size, sizeof(rsp_size), deadline)) {
        if (errno == ETIMEDOUT) {
            fail("ERR_RPC_UNREACHABLE", format("rpc server %s accepted the connection but did not answer the handshake within %d ms "
                    "(an RPC server serves one client at a time: is another process using it?)", endpoint.c_str(), timeout_ms));
        }
        fail("ERR_RPC_PROTOCOL", format("rpc server %s closed the connection during the handshake: not a ggml RPC server of a "
                "compatible version (this build speaks protocol %d.%d.%d)", endpoint.c_str(),
                RPC_PROTO_MAJOR_VERSION, RPC_PROTO_MINOR_VERSION, RPC_PROTO_PATCH_VERSION));
    }
    uint8_t rsp[4 + caps_size] = {};
    if (rsp_size != sizeof(rsp) || !recv_all(s.fd, rsp, sizeof(rsp), deadline)) {
        fail("ERR_RPC_PROTOCOL", format("rpc server %s answered the handshake with a malformed reply: not a ggml RPC server of a "
                "compatible version (this build speaks protocol %d.%d.%d)", endpoint.c_str(),
                RPC_PROTO_MAJOR_VERSION, RPC_PROTO_MINOR_VERSION, RPC_PROTO_PATCH_VERSION));
    }
    if (rsp[0] != RPC_PROTO_MAJOR_VERSION || rsp[1] > RPC_PROTO_MINOR_VERSION) {
        fail("ERR_RPC_PROTOCOL", format("rpc server %s speaks protocol %u.%u.%u, this build of specdec %d.%d.%d: run the same "
                "specdec (or llama.cpp) version on both sides", endpoint.c_str(), rsp[0], rsp[1], rsp[2],
                RPC_PROTO_MAJOR_VERSION, RPC_PROTO_MINOR_VERSION, RPC_PROTO_PATCH_VERSION));
    }
}

#else

void rpc_probe(const std::string & endpoint, int) {
    rpc_parse_endpoint(endpoint);
    fail("ERR_BACKEND_UNAVAILABLE", "the rpc option is not supported on Windows by this build of specdec");
}

#endif

std::vector<ggml_backend_dev_t> rpc_devices(const std::vector<std::string> & endpoints, std::vector<std::shared_ptr<void>> & leases) {
    backends_init();
    std::vector<ggml_backend_dev_t> out;
    for (size_t i = 0; i < endpoints.size(); ++i) {
        for (size_t j = 0; j < i; ++j) {
            if (endpoints[j] == endpoints[i]) fail("ERR_INVALID_OPTION", format("rpc endpoint '%s' is given twice", endpoints[i].c_str()));
        }
    }
    // ggml-rpc keeps a connection per endpoint while buffers on it exist (a model's weights), and a
    // server serves one client at a time: an endpoint that a live model of this process uses is not
    // probed again (a new connection would wait behind our own); once those models are freed, the
    // connection closes and the next use is probed
    static std::mutex mutex;
    static std::map<std::string, std::weak_ptr<void>> live;
    std::lock_guard<std::mutex> lock(mutex);
    for (const std::string & ep : endpoints) {
        std::shared_ptr<void> lease = live[ep].lock();
        if (!lease) {
            rpc_probe(ep);
            lease = std::make_shared<int>(0);
            live[ep] = lease;
        }
        ggml_backend_reg_t reg = ggml_backend_rpc_add_server(ep.c_str());
        if (!reg || ggml_backend_reg_dev_count(reg) == 0) {
            fail("ERR_RPC_PROTOCOL", format("rpc server %s offers no device", ep.c_str()));
        }
        leases.push_back(lease);
        for (size_t d = 0; d < ggml_backend_reg_dev_count(reg); ++d) out.push_back(ggml_backend_reg_dev_get(reg, d));
    }
    return out;
}

void rpc_serve(const std::string & endpoint, int n_threads) {
    backends_init();
    rpc_parse_endpoint(endpoint);
    std::vector<ggml_backend_dev_t> devs;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t d = ggml_backend_dev_get(i);
        if (ggml_backend_dev_type(d) == GGML_BACKEND_DEVICE_TYPE_GPU) devs.push_back(d);
    }
    if (devs.empty()) {
        ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
        if (!cpu) fail("ERR_BACKEND_UNAVAILABLE", "the CPU backend is missing from this build");
        devs.push_back(cpu);
    }
    ggml_backend_rpc_start_server(endpoint.c_str(), nullptr, (size_t) std::max(1, n_threads), devs.size(), devs.data());
    fail("ERR_RPC_SERVER", format("the RPC server could not start on %s (address in use, or not an address of this machine?)", endpoint.c_str()));
}

} // namespace specdec
