-- wrk script: GET 16 KiB objects from a key space far larger than the
-- cache budget, so that the front keeps storing and evicting.
math.randomseed(os.time())
request = function()
  return wrk.format("GET", string.format("/c/%d", math.random(1, 10000000)))
end
