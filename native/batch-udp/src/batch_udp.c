// A UDP socket for Node that receives in batches (recvmmsg) and sends without Node's per-datagram
// machinery: the TURN server's listener, where Node 20's dgram costs more than the relaying
// itself (design.md §7). Linux only; src/node/turn/udp-port.ts falls back to dgram elsewhere.
//
// JavaScript sees: open(host, port, ipv6, bufferBytes, onBatch) -> { handle, data, meta, port }.
// For each batch, onBatch(count, addresses) runs with datagram i in data at i * SLOT_BYTES,
// meta[2i] its length and meta[2i + 1] its source port, addresses[i] its source address. The
// bytes are valid only until onBatch returns. send(handle, bytes, port, address) returns 0 or
// a negative errno (the datagram is dropped, as the network may drop it). close(handle).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <net/if.h>
#include <errno.h>
#include <netinet/in.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

// Datagrams read per readiness, as libuv reads for dgram: more at once would send bursts
// that overflow receivers sharing this thread or these cores (and cost more drops).
#define BATCH 32
// Larger than any UDP payload, so no datagram is ever cut.
#define SLOT_BYTES 65536
// An IPv6 address with its zone as Node writes it ("fe80::1%eth0"): replies to a link-local
// client need the interface.
#define ADDRESS_TEXT (INET6_ADDRSTRLEN + IF_NAMESIZE + 1)

typedef struct {
  napi_env env;
  int fd;
  int ipv6;
  int closing;
  int js_alive;  // the handle External has not been collected
  int uv_alive;  // the poll handle has not finished closing
  uv_poll_t poll;
  napi_ref on_batch;
  napi_ref data_ref;
  napi_ref meta_ref;
  napi_async_context async_context;
  unsigned char *data;
  int32_t *meta;
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  struct sockaddr_storage from[BATCH];
} BatchSocket;

#define CHECK(call)                                            \
  do {                                                         \
    if ((call) != napi_ok) {                                   \
      napi_throw_error(env, NULL, "batch-udp: " #call " failed"); \
      return NULL;                                             \
    }                                                          \
  } while (0)

// An Error as dgram's: `code` the errno's name, the message "bind EADDRINUSE 127.0.0.1:3478".
static napi_value throw_errno(napi_env env, const char *syscall, int err, const char *host,
                              int port) {
  char message[160];
  const char *code = uv_err_name(uv_translate_sys_error(err));
  snprintf(message, sizeof message, "%s %s %s:%d", syscall, code, host, port);
  napi_throw_error(env, code, message);
  return NULL;
}

static void free_if_unused(BatchSocket *s) {
  if (!s->js_alive && !s->uv_alive) free(s);
}

static void on_poll_closed(uv_handle_t *handle) {
  BatchSocket *s = handle->data;
  napi_delete_reference(s->env, s->on_batch);
  napi_delete_reference(s->env, s->data_ref);
  napi_delete_reference(s->env, s->meta_ref);
  napi_async_destroy(s->env, s->async_context);
  s->uv_alive = 0;
  free_if_unused(s);
}

static void start_close(BatchSocket *s) {
  if (s->closing) return;
  s->closing = 1;
  uv_poll_stop(&s->poll);
  // uv_close lets go of the descriptor at once (only its callback waits for the loop), so the
  // port is free when close() returns.
  uv_close((uv_handle_t *)&s->poll, on_poll_closed);
  close(s->fd);
  s->fd = -1;
}

static void on_handle_collected(napi_env env, void *data, void *hint) {
  BatchSocket *s = data;
  s->js_alive = 0;
  if (s->uv_alive) start_close(s);  // dropped without close(): close it now
  else free_if_unused(s);
}

static void format_ipv6(const struct sockaddr_in6 *a, char *text, size_t size) {
  inet_ntop(AF_INET6, &a->sin6_addr, text, size);
  char name[IF_NAMESIZE];
  if (a->sin6_scope_id == 0) return;
  size_t used = strlen(text);
  if (if_indextoname(a->sin6_scope_id, name))
    snprintf(text + used, size - used, "%%%s", name);
  else
    snprintf(text + used, size - used, "%%%u", a->sin6_scope_id);
}

static void on_readable(uv_poll_t *poll, int status, int events) {
  BatchSocket *s = poll->data;
  napi_env env = s->env;
  if (s->closing || status < 0) return;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  // A flow's datagrams come in a row: the same source gets the same string, made once.
  struct sockaddr_storage last_from;
  napi_value last_address = NULL;
  for (int i = 0; i < BATCH; i++) s->msgs[i].msg_hdr.msg_namelen = sizeof s->from[i];
  int n;
  do n = recvmmsg(s->fd, s->msgs, BATCH, MSG_DONTWAIT, NULL);
  while (n < 0 && errno == EINTR);
  // EAGAIN: nothing after all. Other errors on an unconnected UDP socket are transient.
  if (n > 0) {
    napi_value addresses, fn, global, argv[2];
    napi_create_array_with_length(env, n, &addresses);
    for (int i = 0; i < n; i++) {
      char text[ADDRESS_TEXT] = "";
      int v6 = s->from[i].ss_family == AF_INET6;
      struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&s->from[i];
      struct sockaddr_in *a4 = (struct sockaddr_in *)&s->from[i];
      s->meta[2 * i] = (int32_t)s->msgs[i].msg_len;
      s->meta[2 * i + 1] = ntohs(v6 ? a6->sin6_port : a4->sin_port);
      size_t size = v6 ? sizeof *a6 : sizeof *a4;
      if (last_address == NULL || memcmp(&last_from, &s->from[i], size) != 0) {
        if (v6) format_ipv6(a6, text, sizeof text);
        else inet_ntop(AF_INET, &a4->sin_addr, text, sizeof text);
        napi_create_string_latin1(env, text, NAPI_AUTO_LENGTH, &last_address);
        memcpy(&last_from, &s->from[i], size);
      }
      napi_set_element(env, addresses, i, last_address);
    }
    napi_get_reference_value(env, s->on_batch, &fn);
    napi_get_global(env, &global);
    napi_create_int32(env, n, &argv[0]);
    argv[1] = addresses;
    // make_callback, not call_function: process.nextTick and promise jobs run after each batch.
    if (napi_make_callback(env, s->async_context, global, fn, 2, argv, NULL) != napi_ok) {
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
    }
  }
  napi_close_handle_scope(env, scope);
}

static int parse_address(int ipv6, const char *text, int port, struct sockaddr_storage *out,
                         socklen_t *len) {
  memset(out, 0, sizeof *out);
  if (ipv6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    *len = sizeof *a;
    char address[ADDRESS_TEXT];
    snprintf(address, sizeof address, "%s", text);
    char *zone = strchr(address, '%');
    if (zone) {
      *zone++ = '\0';
      a->sin6_scope_id = if_nametoindex(zone);
      if (a->sin6_scope_id == 0) a->sin6_scope_id = (uint32_t)strtoul(zone, NULL, 10);
      if (a->sin6_scope_id == 0) return 0;
    }
    return inet_pton(AF_INET6, address, &a->sin6_addr) == 1;
  }
  struct sockaddr_in *a = (struct sockaddr_in *)out;
  a->sin_family = AF_INET;
  a->sin_port = htons((uint16_t)port);
  *len = sizeof *a;
  return inet_pton(AF_INET, text, &a->sin_addr) == 1;
}

static BatchSocket *socket_of(napi_env env, napi_value handle) {
  void *data = NULL;
  if (napi_get_value_external(env, handle, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, NULL, "batch-udp: not a socket handle");
    return NULL;
  }
  return data;
}

// open(host: string, port: number, ipv6: boolean, bufferBytes: number, onBatch: Function)
static napi_value Open(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char host[ADDRESS_TEXT];
  int32_t port, buffer_bytes;
  bool ipv6;
  size_t host_length;
  CHECK(napi_get_value_string_latin1(env, argv[0], host, sizeof host, &host_length));
  CHECK(napi_get_value_int32(env, argv[1], &port));
  CHECK(napi_get_value_bool(env, argv[2], &ipv6));
  CHECK(napi_get_value_int32(env, argv[3], &buffer_bytes));

  struct sockaddr_storage addr;
  socklen_t addr_len;
  if (host_length >= sizeof host - 1 || !parse_address(ipv6, host, port, &addr, &addr_len)) {
    napi_throw_type_error(env, "EINVAL", "batch-udp: the host must be an IP address");
    return NULL;
  }
  int fd = socket(ipv6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno, host, port);
  int one = 1;
  if (ipv6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (buffer_bytes > 0) {  // as far as the system allows: still a working socket otherwise
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer_bytes, sizeof buffer_bytes);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer_bytes, sizeof buffer_bytes);
  }
  if (bind(fd, (struct sockaddr *)&addr, addr_len) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "bind", err, host, port);
  }
  struct sockaddr_storage bound;
  socklen_t bound_len = sizeof bound;
  getsockname(fd, (struct sockaddr *)&bound, &bound_len);
  int bound_port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                     : ((struct sockaddr_in *)&bound)->sin_port);

  BatchSocket *s = calloc(1, sizeof *s);
  if (!s) {
    close(fd);
    napi_throw_error(env, "ENOMEM", "batch-udp: out of memory");
    return NULL;
  }
  s->env = env;
  s->fd = fd;
  s->ipv6 = ipv6;
  napi_value data, meta_buffer, meta, handle, result, value, name;
  CHECK(napi_create_arraybuffer(env, (size_t)BATCH * SLOT_BYTES, (void **)&s->data, &data));
  CHECK(napi_create_arraybuffer(env, BATCH * 2 * sizeof(int32_t), (void **)&s->meta, &meta_buffer));
  CHECK(napi_create_typedarray(env, napi_int32_array, BATCH * 2, meta_buffer, 0, &meta));
  CHECK(napi_create_reference(env, data, 1, &s->data_ref));
  CHECK(napi_create_reference(env, meta_buffer, 1, &s->meta_ref));
  CHECK(napi_create_reference(env, argv[4], 1, &s->on_batch));
  CHECK(napi_create_string_latin1(env, "rtcmesh.BatchUdp", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, NULL, name, &s->async_context));
  for (int i = 0; i < BATCH; i++) {
    s->iov[i].iov_base = s->data + (size_t)i * SLOT_BYTES;
    s->iov[i].iov_len = SLOT_BYTES;
    s->msgs[i].msg_hdr.msg_iov = &s->iov[i];
    s->msgs[i].msg_hdr.msg_iovlen = 1;
    s->msgs[i].msg_hdr.msg_name = &s->from[i];
  }
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  s->poll.data = s;
  if (uv_poll_init(loop, &s->poll, fd) != 0) {
    close(fd);
    free(s);
    napi_throw_error(env, NULL, "batch-udp: uv_poll_init failed");
    return NULL;
  }
  s->uv_alive = 1;
  s->js_alive = 1;
  uv_poll_start(&s->poll, UV_READABLE, on_readable);

  CHECK(napi_create_external(env, s, on_handle_collected, NULL, &handle));
  CHECK(napi_create_object(env, &result));
  CHECK(napi_set_named_property(env, result, "handle", handle));
  CHECK(napi_set_named_property(env, result, "data", data));
  CHECK(napi_set_named_property(env, result, "meta", meta));
  CHECK(napi_create_int32(env, bound_port, &value));
  CHECK(napi_set_named_property(env, result, "port", value));
  CHECK(napi_create_int32(env, SLOT_BYTES, &value));
  CHECK(napi_set_named_property(env, result, "slotBytes", value));
  return result;
}

// send(handle, bytes: Uint8Array, port: number, address: string) -> 0 or -errno
static napi_value Send(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  BatchSocket *s = socket_of(env, argv[0]);
  if (!s) return NULL;
  int err = 0;
  if (s->closing) err = EBADF;
  void *bytes = NULL;
  size_t length = 0, offset = 0;
  napi_typedarray_type type;
  napi_value buffer;
  // Bytes only: a wider array's length counts elements.
  if (!err && (napi_get_typedarray_info(env, argv[1], &type, &length, &bytes, &buffer, &offset) !=
                   napi_ok ||
               type != napi_uint8_array))
    err = EINVAL;
  int32_t port = 0;
  char text[ADDRESS_TEXT];
  struct sockaddr_storage to;
  socklen_t to_len = 0;
  if (!err && (napi_get_value_int32(env, argv[2], &port) != napi_ok || port <= 0 || port > 65535))
    err = EINVAL;
  size_t text_length = 0;
  if (!err && (napi_get_value_string_latin1(env, argv[3], text, sizeof text, &text_length) != napi_ok ||
               text_length >= sizeof text - 1 || !parse_address(s->ipv6, text, port, &to, &to_len)))
    err = EINVAL;
  if (!err) {
    ssize_t sent;
    do sent = sendto(s->fd, bytes, length, MSG_DONTWAIT, (struct sockaddr *)&to, to_len);
    while (sent < 0 && errno == EINTR);
    if (sent < 0) err = errno;
  }
  CHECK(napi_create_int32(env, -err, &result));
  return result;
}

static napi_value Close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  BatchSocket *s = socket_of(env, argv[0]);
  if (!s) return NULL;
  start_close(s);
  return NULL;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"open", NULL, Open, NULL, NULL, NULL, napi_default, NULL},
      {"send", NULL, Send, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, Close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof methods / sizeof methods[0], methods);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
