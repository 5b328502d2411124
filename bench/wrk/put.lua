-- 4 KiB PUTs of distinct keys: thread t of T puts PREFIX(n * T + t) for n = 0, 1, 2, ... wrk calls request()
-- once more than it sends, to check the script's request: key t (n = 0) may never be put.
-- wrk ... -s put.lua URL -- PREFIX THREADS
package.path = debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua;" .. package.path
require("common")

local prefix, nthreads, n = "/", 1, 0
local body = string.rep("x", 4096)

function init(args)
   prefix, nthreads = args[1], tonumber(args[2])
end

function request()
   local key = n * nthreads + tid
   n = n + 1
   return wrk.format("PUT", prefix .. key, nil, body)
end
