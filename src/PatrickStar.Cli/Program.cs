Console.WriteLine(PatrickStar.Runtime.Probe.Hello());
