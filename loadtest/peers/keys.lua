-- wrk script: GET one of 1,000 immutable 16 KiB objects at random.
local paths = {}
for i = 1, 1000 do
  paths[i] = string.format("/b/%064x", i)
end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", paths[math.random(1000)])
end
