-- wrk script: GET one of the origin's /b/<hash> objects at random. The
-- paths come from the file named after "--" (origin -keyfile).
local paths = {}
init = function(args)
  for line in io.lines(args[1]) do
    paths[#paths + 1] = line
  end
  math.randomseed(os.time() + #paths)
end
request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
