---@meta duplex
-- LuaCATS annotations of duplex's API for lua-language-server (and so
-- Neovim): add this file to `workspace.library`. Never loaded at run time.
-- The reference is docs/api.md.

---@alias duplex.kind "text"|"binary"

---@class duplex.compression
---@field level? integer zlib level 0-9 (default 6)
---@field window_bits? integer 9-15 (default 12)
---@field mem_level? integer zlib memLevel 1-9 (default 5)
---@field context_takeover? boolean false: every message starts afresh (default true)
---@field threshold? integer messages shorter than this many bytes go out uncompressed (default 32)

---@class duplex.server_tls
---@field cert string PEM certificate file (a chain, leaf first)
---@field key string PEM private key file
---@field ca? string PEM file of CAs client certificates must chain to
---@field verify? boolean true: require a client certificate signed by ca (default false)
---@field sni? table<string, { cert: string, key: string }> certificates by requested host name

---@class duplex.client_tls
---@field ca? string PEM file of CAs to trust instead of the system store
---@field cert? string client certificate file
---@field key? string client private key file
---@field verify? boolean false turns off every certificate check: tests only (default true)

---@class duplex.conn_opts
---@field max_message? integer largest message in bytes (default 16 MiB)
---@field max_head? integer handshake head limit in bytes, 256 to 1 MiB (default 8192)
---@field high_water? integer bytes queued above which send waits (default 1 MiB)
---@field close_timeout? number seconds for the close handshake (default 5)
---@field ping_interval? number ping a peer silent this many seconds (default off)
---@field ping_timeout? number seconds to wait after that ping (default ping_interval)
---@field compression? boolean|duplex.compression permessage-deflate

---@class duplex.request
---@field method string
---@field target string the request target, "/path?query"
---@field path string
---@field query? string the raw query string
---@field params table<string, string> the query parsed: the first value of each name
---@field headers table<string, string> names in lower case
---@field remote? string the peer's address (http and accept hooks)
---@field user? any what an accept hook leaves for the handler

---@class duplex.response
---@field status integer
---@field reason string
---@field headers table<string, string> names in lower case

---Answers a request that is not an upgrade: status, headers, body.
---@alias duplex.http_hook fun(req: duplex.request): integer, table<string, string>?, string?

---Answers a GET that accepts text/event-stream: the topics to stream (and
---extra headers), a status to refuse (headers, body), or nothing to hand the
---request to the http hook.
---@alias duplex.sse_hook fun(req: duplex.request): (string[]|string|integer|nil), table<string, string>?, string?

---Accepts an upgrade (nothing or true) or refuses it: status, headers, body.
---@alias duplex.accept_hook fun(req: duplex.request): (true|integer|nil), table<string, string>?, string?

---@class duplex.serve_opts: duplex.conn_opts
---@field host? string IPv4 or IPv6 literal to listen on (default "127.0.0.1")
---@field port? integer 0..65535; 0 picks a free one (default 0)
---@field backlog? integer listen backlog (default 511)
---@field reuseport? boolean SO_REUSEPORT: processes share the port (default false)
---@field protocols? string[] subprotocols, in our order of preference
---@field origins? string[] allowed Origin values (default any)
---@field http? duplex.http_hook answers plain HTTP requests (default: 426)
---@field accept? duplex.accept_hook accepts or refuses an upgrade (default: accept all)
---@field sse? duplex.sse_hook serves Server-Sent Events of topics
---@field sse_heartbeat? number seconds between an event stream's comment lines; 0: none (default 15)
---@field sse_retry? number the reconnect delay an event stream tells the browser, seconds; 0: none (default 3)
---@field on_error? fun(ws_or_req: duplex.ws|duplex.request, err: any, traceback: string) (default: stderr)
---@field handshake_timeout? number seconds for the opening handshake (default 10)
---@field max_backlog? integer bytes queued past which a publish skips a connection (default 1 MiB)
---@field on_backlog? "drop"|"close" what a connection past max_backlog gets (default "drop")
---@field tls? duplex.server_tls serve wss://

---@class duplex.connect_opts: duplex.conn_opts
---@field protocols? string[] subprotocols to offer
---@field headers? table<string, string> extra request headers
---@field origin? string the Origin header
---@field timeout? number seconds for connect plus handshake (default 10)
---@field tls? duplex.client_tls for wss://
---@field proxy? string|false "http://[user:pass@]host:port"; false: never a proxy (default: the environment)
---@field reconnect? boolean|duplex.reconnect stay connected: backoff with jitter, forever (true) or as set
---@field on_open? fun(ws: duplex.ws, info: duplex.open_info) reconnect: on every connection, before the offline queue
---@field on_close? fun(ws: duplex.ws, info: duplex.close_info) reconnect: when a connection has ended
---@field queue? integer reconnect: messages send queues while offline (default 256; 0: none)
---@field should_retry? fun(err: string, code?: integer, reason?: string): boolean? reconnect: true retries, false stops, nil: the default rule

---@class duplex.reconnect
---@field min? number first backoff bound in seconds (default 0.5)
---@field max? number largest backoff bound (default 30)
---@field factor? number the bound grows by this after each failure (default 2)
---@field jitter? boolean full jitter: each delay uniform in 0..bound (default true)
---@field attempts? number tries in a row before giving up (default math.huge)
---@field min_uptime? number seconds up after which the backoff starts afresh (default 5)

---@class duplex.open_info
---@field attempt integer the try that opened this connection (1: the first)
---@field reconnects integer connections opened before this one, less one (0 on the first)
---@field downtime number seconds since the last connection ended (0 on the first)
---@field last_error? string why the last try or connection failed
---@field last_code? integer its HTTP status or close code

---@class duplex.close_info
---@field code integer the close code (1006 without a close frame)
---@field reason string
---@field clean boolean both close frames went across
---@field error string why it ended
---@field uptime number seconds it was open
---@field retry boolean another try follows
---@field delay? number seconds until it

---@class duplex.ws
---@field protocol? string the negotiated subprotocol
---@field compression boolean permessage-deflate negotiated
---@field request duplex.request
---@field response? duplex.response client only: the 101 answer
---@field url? string client only: the URL given to connect
---@field peer_cert? string over TLS: the subject of the peer's certificate
---@field remote string the peer's address, "127.0.0.1:50312"
---@field state "open"|"closing"|"closed"|"connecting"|"reconnecting" (the last two: reconnecting clients)
---@field reconnects? integer reconnecting clients: connections opened after the first
---@field queued? integer reconnecting clients: messages waiting for the next connection
---@field close_code? integer once closed
---@field close_reason? string once closed
---@field close_clean? boolean both close frames went across
---@field buffered integer bytes queued for the peer
---@field dropped integer publishes skipped past max_backlog
local ws = {}

---Queues one whole message; waits while more than high_water bytes are queued.
---@param data string
---@param kind? duplex.kind default "text"
---@return true|nil ok
---@return string? err "closed", "text message is not valid UTF-8", "message too large to send"
function ws:send(data, kind) end

---Waits for the next message.
---@param timeout? number seconds; then nil, "timeout"
---@return string? data
---@return duplex.kind|"closed"|"timeout" kind_or_err
---@return integer? code when closed
---@return string? reason when closed
function ws:receive(timeout) end

---Iterates over the messages until the connection closes (not on PUC Lua 5.1).
---@return fun(): string?, duplex.kind?
function ws:messages() end

---@param data? string at most 125 bytes
---@return true|nil ok
---@return string? err "closed"
function ws:ping(data) end

---Runs the close handshake and waits for it to finish.
---@param code? integer default 1000
---@param reason? string at most 123 bytes of UTF-8
---@return true|nil ok
---@return string? err
function ws:close(code, reason) end

---Drops the TCP connection now, without a close frame.
function ws:abort() end

---Waits until the connection is over.
function ws:wait_closed() end

---@class duplex.subscribe_opts
---@field since? string replay the topic's history after this id ("earliest": all it holds), then go live

---@param topic string
---@param opts? duplex.subscribe_opts
---@return true|nil ok
---@return boolean|string|nil recovered_or_err with opts.since: false when nothing could be replayed; else "closed" on failure
function ws:subscribe(topic, opts) end

---@param topic string
---@return boolean was_subscribed
function ws:unsubscribe(topic) end

---@param topic string
---@return boolean
function ws:subscribed(topic) end

---@return string[]
function ws:topics() end

---Queues the message for every subscriber of topic but this connection. Never waits.
---@param topic string
---@param data string
---@param kind? duplex.kind
---@return integer? queued
---@return integer|string dropped_or_err
---@return string? id when the topic keeps history
function ws:publish(topic, data, kind) end

---@class duplex.server
---@field port integer the port listened on
local server = {}

---Stops listening; accepted connections carry on (see server:shutdown).
function server:close() end

---Stops listening, answers 503 to handshakes in progress, closes this server's
---connections with the close handshake and waits for their handlers (at most
---timeout seconds, then aborts what is left). Outside a coroutine it starts
---the work and returns true at once.
---@param opts? duplex.shutdown_opts
---@return true|nil ok
---@return string? err "timed out"
---@return integer? n_aborted
function server:shutdown(opts) end

---@class duplex.stream_info
---@field remote string the client's address
---@field topics string[]
---@field buffered integer bytes queued for it
---@field dropped integer publishes dropped over max_backlog
---@field skipped integer binary publishes, which an event stream cannot carry

---The open Server-Sent Event streams.
---@return duplex.stream_info[]
function server:streams() end

---Swaps the certificates for connections accepted from then on.
---@param tls duplex.server_tls
---@return true|nil ok
---@return string? err
function server:reload_tls(tls) end

---@class duplex.shutdown_opts
---@field code? integer close code (default 1001)
---@field reason? string close reason (default "server shutting down")
---@field timeout? number seconds to wait for handlers before aborting (default 10)

---@alias duplex.signal "SIGINT"|"SIGTERM"|"SIGHUP"|"SIGUSR1"|"SIGUSR2"

---@class duplex.timer
local timer = {}

---Calls the timer off (also from inside its function).
---@return boolean pending true when a run was still to come
function timer:stop() end

---@class duplex
---@field _VERSION string
local duplex = {}

---Listens; handler(ws) runs in a coroutine of its own for every connection.
---@param opts duplex.serve_opts
---@param handler fun(ws: duplex.ws)
---@return duplex.server? server
---@return string? err
function duplex.serve(opts, handler) end

---Opens a client connection to a ws:// or wss:// URL; with opts.reconnect, one that stays connected.
---@param url string|fun(): string a function (reconnect only) is called before each try
---@param opts? duplex.connect_opts
---@return duplex.ws? ws
---@return string? err
---@return duplex.response? response when the server (or the proxy) refused
function duplex.connect(url, opts) end

---Runs fn(...) as a coroutine (if given), then the loop until nothing is left or stop().
---While it runs, SIGINT and SIGTERM without an on_signal handler make it return
---nil, "interrupted", the signal's name.
---@param fn? fun(...)
---@param ... any
---@return nil
---@return "interrupted"? why
---@return duplex.signal? signal
function duplex.run(fn, ...) end

---Every server and client connection: server:shutdown for every server, and
---the close handshake for every duplex.connect client.
---@param opts? duplex.shutdown_opts
---@return true|nil ok
---@return string? err "timed out"
---@return integer? n_aborted
function duplex.shutdown(opts) end

---Runs fn(name) in a coroutine of its own on each delivery of the signal; nil removes it.
---@param name duplex.signal
---@param fn? fun(name: duplex.signal)
function duplex.on_signal(name, fn) end

---Runs fn(...) in a new coroutine at the next step.
---@param fn fun(...)
---@param ... any
---@return thread
function duplex.spawn(fn, ...) end

---@param seconds number
function duplex.sleep(seconds) end

---Calls fn(timer) every seconds, each run in a coroutine of its own.
---@param seconds number > 0
---@param fn fun(timer: duplex.timer)
---@return duplex.timer
function duplex.every(seconds, fn) end

---Calls fn(timer) once after seconds, in a coroutine of its own.
---@param seconds number >= 0
---@param fn fun(timer: duplex.timer)
---@return duplex.timer
function duplex.after(seconds, fn) end

---Makes run return after the current step.
function duplex.stop() end

---The loop's clock in seconds.
---@return number
function duplex.now() end

---Queues the message for every subscriber of topic. Never waits.
---@param topic string
---@param data string
---@param kind? duplex.kind
---@return integer? queued
---@return integer|string dropped_or_err
---@return string? id when the topic keeps history
function duplex.publish(topic, data, kind) end

---@class duplex.history_opts
---@field size integer most messages kept (1 to 1000000)
---@field ttl? number seconds a message is kept (default: no age limit)
---@field bytes? integer most payload bytes kept (default: no limit)

---Makes the topic keep its last messages for ws:subscribe(topic, { since = id }); false ends it.
---@param topic string
---@param opts duplex.history_opts|false
---@return true|nil ok
---@return string? err
function duplex.history(topic, opts) end

---The newest id of the topic's history, or nil.
---@param topic string
---@return string?
function duplex.last_id(topic) end

---@param topic string
---@return integer
function duplex.subscribers(topic) end

---@class duplex.broker_reconnect
---@field min? number seconds, the shortest reconnect delay (default 0.1)
---@field max? number seconds, the longest (default 5)

---@class duplex.broker_opts
---@field prefix? string Redis channel prefix (default "duplex:")
---@field timeout? number seconds to connect (default 5)
---@field reconnect? duplex.broker_reconnect full-jitter backoff bounds
---@field max_queue? integer bytes waiting for Redis past which publishes drop (default 8 MiB)

---@class duplex.broker
---@field state "connected"|"connecting"|"closed"
---@field error? string the last connection failure
---@field published integer
---@field received integer
---@field dropped integer
---@field invalid integer
local broker = {}

---Stops joining topics through Redis.
function broker:close() end

---Joins this process's topics to the others on the same Redis; waits for
---the first connection (at most opts.timeout).
---@param url string redis://[:password@]host[:port][/db] or unix:/path
---@param opts? duplex.broker_opts
---@return duplex.broker?
---@return string? err
function duplex.broker(url, opts) end

---libuv's backend file descriptor, to poll from another loop.
---@return integer?
function duplex.pollfd() end

---@return "r"
function duplex.events() end

---Seconds until duplex needs a step: 0 when work is pending, nil when nothing is scheduled.
---@return number?
function duplex.timeout() end

---Runs one step, waiting at most timeout seconds (default 0).
---@param timeout? number
function duplex.step(timeout) end

return duplex
