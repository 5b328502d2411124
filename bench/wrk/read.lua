-- GET over COUNT keys PREFIX(FIRST) .. PREFIX(FIRST + COUNT - 1), in turn (each thread from its own offset).
-- wrk ... -s read.lua URL -- METHOD PREFIX FIRST COUNT
package.path = debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua;" .. package.path
require("common")

local method, prefix, first, count, n = "GET", "/", 0, 1, 0

function init(args)
   method, prefix, first, count = args[1], args[2], tonumber(args[3]), tonumber(args[4])
   n = tid * 7919
end

function request()
   n = n + 1
   return wrk.format(method, prefix .. (first + n % count), nil, nil)
end
