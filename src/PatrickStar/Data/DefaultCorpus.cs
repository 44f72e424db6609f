using System.Globalization;
using System.Text;

namespace PatrickStar.Data;

/// <summary>
/// A built-in English corpus, generated procedurally, used when the user gives no data files.
/// </summary>
/// <remarks>
/// All word lists and templates are original to this file; nothing is quoted from other texts.
/// The text is built to be learnable step by step by a small language model: local grammar first
/// (articles, pronoun agreement, verb forms), then global facts (a fixed cast of characters keeps
/// the same town, job and pet across the whole corpus; cows always say moo), then in-context facts
/// (a question at the end of a story is answered by something stated earlier in the same paragraph;
/// sums, change and durations are computed correctly). Paragraphs are separated by blank lines.
/// Output depends only on the arguments: a private SplitMix64 generator and invariant formatting
/// make it identical on every machine and .NET version.
/// </remarks>
public static class DefaultCorpus
{
    public const int DefaultSeed = 1234;
    public const int DefaultLength = 1_500_000;

    /// <summary>Identifier of this corpus in configs, logs and cache keys.</summary>
    public static string Name => "builtin";

    /// <summary>
    /// Generates the corpus. The result is made of whole paragraphs: at least <paramref name="targetChars"/>
    /// characters and at most one paragraph more (empty when <paramref name="targetChars"/> is 0).
    /// </summary>
    public static string Generate(int seed = DefaultSeed, int targetChars = DefaultLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(targetChars);
        return targetChars == 0 ? string.Empty : new Writer(seed, targetChars).Run();
    }

    // ---------------------------------------------------------------- random numbers

    /// <summary>SplitMix64: tiny, fast, and fully specified, unlike System.Random whose sequence may change.</summary>
    private sealed class Rng(int seed)
    {
        private ulong _state = (ulong)(long)seed * 0x9E3779B97F4A7C15UL + 0x2545F4914F6CDD1DUL;

        public ulong NextU64()
        {
            ulong z = _state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }

        /// <summary>Uniform integer in [0, n); multiply-shift keeps it branch-free and bias negligible.</summary>
        public int Next(int n) => (int)(((NextU64() >> 32) * (ulong)n) >> 32);

        /// <summary>Uniform integer in [lo, hi] inclusive.</summary>
        public int Range(int lo, int hi) => lo + Next(hi - lo + 1);

        public bool Chance(int percent) => Next(100) < percent;

        public T Pick<T>(T[] items) => items[Next(items.Length)];

        public void Shuffle<T>(T[] items)
        {
            for (int i = items.Length - 1; i > 0; i--)
            {
                int j = Next(i + 1);
                (items[i], items[j]) = (items[j], items[i]);
            }
        }

        /// <summary>k distinct items, in random order.</summary>
        public T[] Sample<T>(T[] items, int k)
        {
            var copy = (T[])items.Clone();
            for (int i = 0; i < k; i++)
            {
                int j = i + Next(copy.Length - i);
                (copy[i], copy[j]) = (copy[j], copy[i]);
            }
            return copy[..k];
        }
    }

    // ---------------------------------------------------------------- world model

    private sealed record Job(string Title, string Place, string Work);

    /// <summary>A kind of pet. Habits are third-person verb phrases; {pHis} etc. refer to the pet.</summary>
    private sealed record PetKind(string Kind, string Eats, string Escape, string BringHome, string[] Habits);

    /// <summary>A verb phrase in three forms, so it can be used in present, past and future sentences.</summary>
    private sealed record Act(string Base, string Third, string Past, string Rest, bool Outdoor);

    private sealed record Place(string Name, string SearchPrep);

    private sealed record Item(string One, string Many, int Price);

    private sealed record Fact(string Animal, string Plural, string? Sound, string Home, string Eats, int Legs);

    private enum Sky { Sunny, Cloudy, Rainy, Windy, Snowy }

    private sealed class Person
    {
        public required string Name { get; init; }
        public required bool Female { get; init; }
        public required int Age { get; init; }
        public required Job Job { get; init; }
        public required string Town { get; init; }
        public required PetKind Pet { get; init; }
        public required string PetName { get; init; }
        public required bool PetFemale { get; init; }
        public required string Food { get; init; }
        public required string Color { get; init; }
        public required Act Hobby { get; init; }
        public required int WakeHour { get; init; }

        public string He => Female ? "she" : "he";
        public string Him => Female ? "her" : "him";
        public string His => Female ? "her" : "his";
    }

    // ---------------------------------------------------------------- the writer

    private sealed class Writer
    {
        private readonly Rng _r;
        private readonly StringBuilder _sb;
        private readonly int _target;
        private readonly Person[] _cast;
        private readonly string[] _freshNames;
        private readonly (int Weight, Action Write)[] _kinds;
        private readonly int _totalWeight;
        private bool _lineStart = true;

        // Context for Fill(): the paragraph's main person and a friend's name.
        private Person _p = null!;
        private string _friend = "";
        private bool _firstPerson; // set by Fill1: the person is speaking ("my bicycle", not "her bicycle")

        public Writer(int seed, int target)
        {
            _r = new Rng(seed);
            _target = target;
            _sb = new StringBuilder(target + 4096);

            // Half of the names form a fixed cast whose attributes hold across the whole corpus
            // (a fact a model can memorise); the other half get fresh attributes in every paragraph
            // (facts it must read from the context).
            var females = (string[])Lex.FemaleNames.Clone();
            var males = (string[])Lex.MaleNames.Clone();
            _r.Shuffle(females);
            _r.Shuffle(males);
            int fh = females.Length / 2, mh = males.Length / 2;
            _cast = [.. females[..fh].Select(n => NewPerson(n, true)), .. males[..mh].Select(n => NewPerson(n, false))];
            _freshNames = [.. females[fh..], .. males[mh..]];

            _kinds =
            [
                (20, DailyStory), (7, LostPetStory), (6, MarketStory), (5, TripStory),
                (6, MeetingDialogue), (5, ShopDialogue), (4, DirectionsDialogue), (3, PlansDialogue),
                (9, Arithmetic), (7, WeatherReport), (6, Recipe), (5, Siblings),
                (5, Lists), (6, FactsQuiz), (4, Letter), (3, Calendar),
            ];
            _totalWeight = _kinds.Sum(k => k.Weight);
        }

        public string Run()
        {
            while (_sb.Length < _target)
            {
                if (_sb.Length > 0) _sb.Append("\n\n");
                _lineStart = true;
                int x = _r.Next(_totalWeight);
                foreach (var (weight, write) in _kinds)
                {
                    if ((x -= weight) < 0) { write(); break; }
                }
            }
            return _sb.ToString();
        }

        // ------------------------------------------------------------ output helpers

        /// <summary>Appends a sentence to the current line, space-separated.</summary>
        private void S(string sentence)
        {
            if (!_lineStart) _sb.Append(' ');
            _sb.Append(sentence);
            _lineStart = false;
        }

        /// <summary>Starts a new line inside the paragraph (dialogue turns, list items, questions).</summary>
        private void L(string line)
        {
            if (!_lineStart) _sb.Append('\n');
            _sb.Append(line);
            _lineStart = false;
        }

        private void QA(string question, string answer)
        {
            L("Question: " + question);
            L("Answer: " + answer);
        }

        /// <summary>Asks up to <paramref name="max"/> of the facts stated in this paragraph, in random order.</summary>
        private void AskSome(List<(string Q, string A)> facts, int min, int max)
        {
            int k = Math.Min(facts.Count, _r.Range(min, max));
            foreach (var (q, a) in _r.Sample(facts.ToArray(), k)) QA(q, a);
        }

        /// <summary>
        /// Expands {keys} in a template: pronouns of the current person (he/He/him/his/His), of the pet
        /// (pHe/pHim/pHis), names, and a few random fillers (topic, color, n, flowers, fruits).
        /// </summary>
        private string Fill(string t)
        {
            int open = t.IndexOf('{');
            if (open < 0) return t;
            var sb = new StringBuilder(t.Length + 32);
            int i = 0;
            while (open >= 0)
            {
                sb.Append(t, i, open - i);
                int close = t.IndexOf('}', open);
                sb.Append(Key(t.Substring(open + 1, close - open - 1)));
                i = close + 1;
                open = t.IndexOf('{', i);
            }
            sb.Append(t, i, t.Length - i);
            return sb.ToString();
        }

        /// <summary>Fill() for words spoken or written by the person themself.</summary>
        private string Fill1(string t)
        {
            _firstPerson = true;
            try { return Fill(t); }
            finally { _firstPerson = false; }
        }

        private string Key(string key) => key switch
        {
            "he" => _firstPerson ? "I" : _p.He,
            "He" => _firstPerson ? "I" : Cap(_p.He),
            "him" => _firstPerson ? "me" : _p.Him,
            "his" => _firstPerson ? "my" : _p.His,
            "His" => _firstPerson ? "My" : Cap(_p.His),
            "name" => _p.Name,
            "pet" => _p.PetName,
            "kind" => _p.Pet.Kind,
            "pHe" => _p.PetFemale ? "she" : "he",
            "pHim" => _p.PetFemale ? "her" : "him",
            "pHis" => _p.PetFemale ? "her" : "his",
            "friend" => _friend,
            "town" => _p.Town,
            "color" => _r.Pick(Lex.Colors),
            "acolor" => A(_r.Pick(Lex.Colors)),
            "topic" => _r.Pick(Lex.Topics),
            "n" => Num(_r.Range(2, 12)),
            "flowers" => _r.Pick(Lex.Flowers),
            "fruits" => _r.Pick(Lex.FruitItems).Many,
            "place" => _r.Pick(Lex.Places).Name,
            _ => throw new InvalidOperationException("unknown template key {" + key + "}"),
        };

        // ------------------------------------------------------------ people

        private Person NewPerson(string name, bool female)
        {
            var job = _r.Pick(Lex.Jobs);
            return new Person
            {
                Name = name,
                Female = female,
                Age = _r.Range(19, 78),
                Job = job,
                Town = _r.Pick(Lex.Towns),
                Pet = _r.Pick(Lex.Pets),
                PetName = _r.Pick(Lex.PetNames),
                PetFemale = _r.Chance(50),
                Food = _r.Pick(Lex.Dinners),
                Color = _r.Pick(Lex.Colors),
                Hobby = _r.Pick(Lex.Hobbies),
                WakeHour = _r.Range(5, 8),
            };
        }

        private Person PickPerson()
        {
            if (_r.Chance(55)) return _r.Pick(_cast);
            string name = _r.Pick(_freshNames);
            return NewPerson(name, IsFemale(name));
        }

        private string OtherName(params string[] exclude)
        {
            while (true)
            {
                string n = _r.Chance(50) ? _r.Pick(Lex.FemaleNames) : _r.Pick(Lex.MaleNames);
                if (Array.IndexOf(exclude, n) < 0) return n;
            }
        }

        /// <summary>A name outside the fixed cast, for people whose made-up facts must not clash with the cast's.</summary>
        private string FreshName(params string[] exclude)
        {
            while (true)
            {
                string n = _r.Pick(_freshNames);
                if (Array.IndexOf(exclude, n) < 0) return n;
            }
        }

        private static bool IsFemale(string name) => Array.IndexOf(Lex.FemaleNames, name) >= 0;

        private void Begin(Person p)
        {
            _p = p;
            _friend = OtherName(p.Name);
        }

        // ------------------------------------------------------------ stories

        /// <summary>A day in a person's life: time of day moves forward, weather shapes the plans.</summary>
        private void DailyStory()
        {
            var p = PickPerson();
            Begin(p);
            var facts = new List<(string, string)>();
            int day = _r.Next(7);
            bool weekend = day >= 5;
            var sky = (Sky)_r.Next(5);
            if (sky == Sky.Snowy && _r.Chance(50)) sky = Sky.Cloudy; // snow is rarer
            string adj = _r.Pick(Lex.PetAdjectives);

            switch (_r.Next(3))
            {
                case 0:
                    S($"{p.Name} is {A(p.Job.Title)} who lives in {p.Town}.");
                    S($"{Cap(p.He)} is {Num(p.Age)} years old, and {p.He} has {A(adj)} {p.Pet.Kind} named {p.PetName}.");
                    break;
                case 1:
                    S($"In the town of {p.Town}, there lives {A(p.Job.Title)} called {p.Name}.");
                    S($"{p.Name} is {Num(p.Age)} years old and has {A(adj)} {p.Pet.Kind} called {p.PetName}.");
                    break;
                default:
                    S($"This is a story about {p.Name}, {A(p.Job.Title)} from {p.Town}.");
                    S($"{p.Name} lives with {A(adj)} {p.Pet.Kind} named {p.PetName}.");
                    S($"{Cap(p.He)} is {Num(p.Age)} years old.");
                    break;
            }
            facts.Add(($"Where does {p.Name} live?", $"{Cap(p.He)} lives in {p.Town}."));
            facts.Add(($"What is the name of {p.Name}'s {p.Pet.Kind}?", $"The {p.Pet.Kind} is called {p.PetName}."));
            facts.Add(($"How old is {p.Name}?", $"{Cap(p.He)} is {Num(p.Age)} years old."));
            facts.Add(($"What is {p.Name}'s job?", $"{Cap(p.He)} is {A(p.Job.Title)}."));

            if (_r.Chance(50))
            {
                S($"{p.Name}'s favorite food is {p.Food}, and {p.His} favorite color is {p.Color}.");
                facts.Add(($"What is {p.Name}'s favorite color?", $"{Cap(p.His)} favorite color is {p.Color}."));
            }

            // Morning.
            S($"On {Lex.Days[day]} morning, {p.Name} wakes up at {Clock(p.WakeHour)}.");
            facts.Add(($"What time does {p.Name} wake up on {Lex.Days[day]}?", $"At {Clock(p.WakeHour)}."));
            S(sky switch
            {
                Sky.Sunny => "The sun is shining, and the sky is clear and blue.",
                Sky.Cloudy => "The sky is gray and full of clouds.",
                Sky.Rainy => $"It is raining outside, so {p.He} puts on {p.His} {p.Color} raincoat.",
                Sky.Windy => "A strong wind is blowing through the trees.",
                _ => $"Snow is falling, and all the roofs in {p.Town} are white.",
            });
            S($"{Cap(p.He)} eats {_r.Pick(Lex.Breakfasts)} for breakfast and gives {p.PetName} some {p.Pet.Eats}.");
            if (_r.Chance(60)) S($"{p.PetName} {Fill(_r.Pick(p.Pet.Habits))}.");

            // Work, or a free day; weekends are always free.
            if (!weekend)
            {
                int start = Math.Min(p.WakeHour + _r.Range(1, 2), 9);
                S($"At {Clock(start)}, {p.He} goes to the {p.Job.Place}, where {p.He} {p.Job.Work}.");
                facts.Add(($"Where does {p.Name} work?", $"At the {p.Job.Place}."));
            }
            else
            {
                S($"It is {Lex.Days[day]}, so {p.Name} does not go to work today.");
                S($"Instead, {p.He} {Fill(Third(p.Hobby))}.");
                facts.Add(($"Does {p.Name} work on {Lex.Days[day]}?", $"No. It is {Lex.Days[day]}, so {p.He} does not work."));
            }

            // Noon.
            string lunch = _r.Pick(Lex.Lunches);
            if (_r.Chance(60))
            {
                S($"At noon, {p.He} meets {p.His} friend {_friend} for lunch, and they eat {lunch}.");
                facts.Add(($"Who does {p.Name} have lunch with?", $"With {p.His} friend {_friend}."));
            }
            else
            {
                S($"At noon, {p.He} has {lunch} for lunch.");
                facts.Add(($"What does {p.Name} have for lunch?", $"{Cap(lunch)}."));
            }

            // Afternoon: bad weather keeps people indoors.
            bool wet = sky is Sky.Rainy or Sky.Snowy;
            var act = PickAct(outdoor: wet ? false : null);
            string did = Fill(Third(act));
            if (wet)
                S($"In the afternoon, it is still {(sky == Sky.Rainy ? "raining" : "snowing")}, so {p.He} stays inside and {did}.");
            else if (act.Outdoor)
                S($"In the afternoon, the weather is {(sky == Sky.Windy ? "windy but dry" : "fine")}, so {p.He} {did}.");
            else
                S($"In the afternoon, {p.He} {did}.");
            facts.Add(($"What does {p.Name} do in the afternoon?", $"{Cap(p.He)} {did}."));

            // Evening: a favourite food, when it appears, is named as such.
            string dinner = _r.Chance(35) ? p.Food : _r.Pick(Lex.Dinners);
            S(dinner == p.Food
                ? $"In the evening, {p.He} cooks {dinner}, which is {p.His} favorite food."
                : $"In the evening, {p.He} cooks {dinner} for dinner.");
            facts.Add(($"What does {p.Name} cook for dinner?", $"{Cap(dinner)}."));
            S($"After dinner, {p.He} {Fill(_r.Pick(Lex.Evenings))}.");

            int bed = _r.Range(21, 23);
            S(_r.Chance(50)
                ? $"At {Clock(bed)}, {p.He} says good night to {p.PetName} and goes to bed."
                : $"{p.Name} goes to bed at {Clock(bed)}, and {p.PetName} sleeps at the foot of the bed.");
            facts.Add(($"When does {p.Name} go to bed?", $"At {Clock(bed)}."));
            AskSome(facts, 1, 3);
        }

        /// <summary>Past tense; the answer to "where was the pet found" is only in the paragraph.</summary>
        private void LostPetStory()
        {
            var p = PickPerson();
            Begin(p);
            var spots = _r.Sample(Lex.SearchPlaces, 3);
            var facts = new List<(string, string)>();
            string day = _r.Pick(Lex.Days);

            S($"Last {day}, {p.Name}'s {p.Pet.Kind} {p.PetName} {Fill(p.Pet.Escape)}.");
            S(_r.Chance(50) ? $"{p.Name} was very worried." : $"{p.Name} could not find {p.PetName} anywhere.");
            S($"First, {p.He} looked {Where(spots[0])}, but {p.PetName} was not there.");
            S($"Then {p.He} looked {Where(spots[1])}, but the {p.Pet.Kind} was not there either.");
            S($"{_friend} said, \"I saw {A(p.Pet.Kind)} {Where(spots[2])} this morning.\"");
            S($"So {p.Name} hurried to the {spots[2].Name}, and there was {p.PetName}, {_r.Pick(Lex.FoundDoing)}.");
            S($"{p.Name} was so happy that {p.He} laughed out loud.");
            S($"{Cap(p.He)} {Fill(p.Pet.BringHome)}, and that evening {p.PetName} got extra {p.Pet.Eats}.");
            facts.Add(($"Where did {p.Name} find {p.PetName}?", $"{Cap(Where(spots[2]))}."));
            facts.Add(($"Where did {p.Name} look first?", $"{Cap(Where(spots[0]))}."));
            facts.Add(($"Who saw the {p.Pet.Kind}?", $"{_friend} saw it."));
            facts.Add(($"What kind of animal is {p.PetName}?", $"{p.PetName} is {A(p.Pet.Kind)}."));
            AskSome(facts, 1, 2);
        }

        /// <summary>Shopping with correct totals and change, in words.</summary>
        private void MarketStory()
        {
            var p = PickPerson();
            Begin(p);
            var items = _r.Sample(Lex.MarketItems, _r.Range(2, 3));
            var counts = items.Select(_ => _r.Range(1, 5)).ToArray();
            int total = 0;
            for (int i = 0; i < items.Length; i++) total += counts[i] * items[i].Price;
            int money = total + _r.Range(0, 12);

            S($"On {_r.Pick(Lex.Days)}, {p.Name} went to the market in {p.Town} with {Num(money)} coins.");
            var prices = items.Select(it => $"{A(it.One)} cost {Count(it.Price, "coin", "coins")}").ToArray();
            S($"At the market, {Join(prices)}.");
            S($"{Cap(p.He)} bought {Join(items.Select((it, i) => Count(counts[i], it.One, it.Many)).ToArray())}.");
            for (int i = 0; i < items.Length; i++)
            {
                if (counts[i] > 1)
                    S($"{Cap(Num(counts[i]))} {items[i].Many} cost {Num(counts[i])} times {Num(items[i].Price)}, which is {Num(counts[i] * items[i].Price)} coins.");
            }
            S($"So {p.Name} spent {Coins(total)} in all, and {p.He} had {Coins(money - total)} left.");
            if (money == total) S($"{Cap(p.His)} purse was empty, but {p.He} had everything {p.He} needed.");
            var facts = new List<(string, string)>
            {
                ($"How many coins did {p.Name} spend?", $"{Cap(Coins(total))}."),
                ($"How many coins did {p.Name} have left?", $"{Cap(Coins(money - total))}."),
                ($"How many {items[0].Many} did {p.Name} buy?", $"{Cap(Num(counts[0]))}."),
            };
            AskSome(facts, 1, 2);
        }

        /// <summary>A train trip with departure, arrival and a correctly computed duration.</summary>
        private void TripStory()
        {
            var p = PickPerson();
            Begin(p);
            _friend = FreshName(p.Name); // this friend's town is stated, so keep cast members out
            string to = p.Town;
            while (to == p.Town) to = _r.Pick(Lex.Towns);
            int dep = _r.Range(6 * 12, 17 * 12) * 5; // minutes after midnight, on a five-minute grid
            int dur = _r.Range(4, 40) * 5;
            int arr = dep + dur;
            string vehicle = _r.Pick(["train", "bus"]);

            S($"{p.Name} wanted to visit {p.His} friend {_friend} in {to}.");
            S($"On {_r.Pick(Lex.Days)}, {p.He} took the {vehicle} from {p.Town}.");
            S($"The {vehicle} left at {Digital(dep)} and arrived in {to} at {Digital(arr)}, so the trip took {Duration(dur)}.");
            S($"On the way, {p.Name} {_r.Pick(Lex.TravelActs)}.");
            S($"{_friend} was waiting at the station, and together they {Fill(Past(PickAct(null, shared: true)))}.");
            var facts = new List<(string, string)>
            {
                ($"How long did the trip take?", $"It took {Duration(dur)}."),
                ($"When did the {vehicle} arrive?", $"At {Digital(arr)}."),
                ($"Who did {p.Name} visit?", $"{Cap(p.His)} friend {_friend}, in {to}."),
            };
            AskSome(facts, 1, 2);
        }

        // ------------------------------------------------------------ dialogues

        private void MeetingDialogue()
        {
            var a = PickPerson();
            var b = PickPerson();
            while (b.Name == a.Name) b = PickPerson();
            Begin(a);
            _friend = OtherName(a.Name, b.Name);
            var place = _r.Pick(Lex.Places);
            string greet = _r.Pick(["Good morning", "Hello", "Good afternoon", "Hi"]);

            S($"{a.Name} met {b.Name} {At(place)} the {place.Name} in {a.Town}.");
            L($"\"{greet}, {b.Name},\" said {a.Name}. \"How are you today?\"");
            L($"\"{_r.Pick(Lex.Moods)}, thank you,\" said {b.Name}. \"And how is your {a.Pet.Kind}, {a.PetName}?\"");
            L($"\"{Cap(Fill("{pHe}"))} is very well. This morning {Fill("{pHe}")} woke me up at {Clock(a.WakeHour - 1)}.\"");
            L($"\"What did {Fill("{pHe}")} want?\" asked {b.Name}.");
            L($"\"Some {a.Pet.Eats}, of course!\" said {a.Name}, and they both laughed.");
            L($"\"Where are you going now?\" asked {b.Name}.");
            L($"\"I am going to the {a.Job.Place}. I work there as {A(a.Job.Title)}.\"");
            if (_r.Chance(50))
            {
                L($"\"Then I will see you later,\" said {b.Name}. \"I am going to {Fill1(Base(b.Hobby))}.\"");
            }
            else
            {
                var act = PickAct(null, shared: true);
                int day = _r.Next(7);
                L($"\"Would you like to {Fill(Base(act))} with me on {Lex.Days[day]}?\" asked {b.Name}.");
                // Only a weekday can clash with work, so only a weekday may be refused for that reason.
                L(day >= 5 || _r.Chance(60)
                    ? $"\"Yes, I would like that very much,\" said {a.Name}."
                    : $"\"I am sorry, I cannot. On {Lex.Days[day]} I have to work,\" said {a.Name}.");
            }
            QA($"Where does {a.Name} work?", $"At the {a.Job.Place}.");
        }

        /// <summary>Price times quantity, a payment that covers it, and the correct change.</summary>
        private void ShopDialogue()
        {
            var p = PickPerson();
            Begin(p);
            var item = _r.Pick(Lex.MarketItems);
            int n = _r.Range(1, 6);
            int cost = n * item.Price;
            int note = Array.FindIndex(Lex.Notes, v => v >= cost); // the smallest note that covers the cost
            if (note < Lex.Notes.Length - 1 && _r.Chance(30)) note++;
            int pay = _r.Chance(20) ? cost : Lex.Notes[note];
            string seller = _r.Pick(["the shopkeeper", "the woman behind the counter", "the man behind the counter", "the old shopkeeper"]);

            S($"{p.Name} went into a small shop in {p.Town}.");
            L($"\"{_r.Pick(["Good morning", "Good afternoon", "Hello"])}. How can I help you?\" asked {seller}.");
            L($"\"I would like {Count(n, item.One, item.Many)}, please,\" said {p.Name}.");
            L($"\"{Cap(Count(n, item.One, item.Many))} {(n == 1 ? "costs" : "cost")} {Count(cost, "coin", "coins")},\" said {seller}.");
            if (pay == cost)
            {
                L($"\"Here you are, exactly {Count(cost, "coin", "coins")},\" said {p.Name}.");
                L("\"Thank you very much. Have a nice day!\"");
            }
            else
            {
                L($"\"Here are {Num(pay)} coins,\" said {p.Name}.");
                L($"\"Thank you. Here is your change: {Count(pay - cost, "coin", "coins")}.\"");
            }
            if (_r.Chance(50)) QA($"How much change did {p.Name} get?", pay == cost ? "None, because the money was exact." : $"{Cap(Count(pay - cost, "coin", "coins"))}.");
        }

        private void DirectionsDialogue()
        {
            var p = PickPerson();
            Begin(p);
            var spots = _r.Sample(Lex.Places, 3);
            string goal = spots[0].Name, turnAt = spots[1].Name, nextTo = spots[2].Name;
            string side = _r.Pick(["left", "right"]);
            string street = _r.Pick(Lex.Streets);

            string town = _r.Pick(Lex.Towns);
            S(town == p.Town
                ? $"{p.Name} had just moved to {town} and could not find the {goal}."
                : $"{p.Name} was visiting {town} and could not find the {goal}.");
            L($"\"Excuse me,\" {p.He} said to a {_r.Pick(["woman", "man", "boy", "girl", "police officer"])}. \"Where is the {goal}, please?\"");
            L($"\"Go straight along {street}, then turn {side} at the {turnAt}. The {goal} is next to the {nextTo}.\"");
            L($"\"Thank you very much!\" said {p.Name}.");
            L($"So {p.Name} walked along {street}, turned {side} at the {turnAt}, and found the {goal} next to the {nextTo}.");
            if (_r.Chance(50)) QA($"What is next to the {goal}?", $"The {nextTo}.");
            else QA($"Where did {p.Name} turn {side}?", $"At the {turnAt}.");
        }

        /// <summary>Meeting some minutes before an event: time arithmetic inside a dialogue.</summary>
        private void PlansDialogue()
        {
            string a = OtherName(), b = OtherName(a);
            string evt = _r.Pick(Lex.Events);
            int start = _r.Range(10 * 4, 21 * 4) * 15;
            int before = _r.Pick([15, 30, 60]);
            var place = _r.Pick(Lex.Places);
            string where = $"{At(place)} the {place.Name}";

            L($"\"What time does the {evt} start?\" asked {a}.");
            L($"\"At {Digital(start)},\" said {b}.");
            L($"\"Then let us meet {where} at {Digital(start - before)}, {Duration(before)} before it starts.\"");
            L($"\"Good idea. See you at {Digital(start - before)}!\"");
            QA($"What time will {a} and {b} meet?", $"At {Digital(start - before)}, {where}.");
        }

        // ------------------------------------------------------------ numbers

        private void Arithmetic()
        {
            int kind = _r.Next(6);
            switch (kind)
            {
                case 0:
                    S("Let us practice adding.");
                    for (int i = _r.Range(4, 7); i > 0; i--)
                    {
                        int x = _r.Range(0, 12), y = _r.Range(0, 12);
                        S(_r.Chance(50) ? $"{Cap(Num(x))} plus {Num(y)} makes {Num(x + y)}." : $"{D(x)} + {D(y)} = {D(x + y)}.");
                    }
                    break;
                case 1:
                    S("Now some taking away.");
                    for (int i = _r.Range(4, 7); i > 0; i--)
                    {
                        int x = _r.Range(1, 20), y = _r.Range(0, x);
                        S(_r.Chance(50) ? $"{Cap(Num(x))} minus {Num(y)} is {Num(x - y)}." : $"{D(x)} - {D(y)} = {D(x - y)}.");
                    }
                    break;
                case 2:
                {
                    int t = _r.Range(2, 10);
                    S($"Here is the {Num(t)} times table.");
                    int from = _r.Range(1, 4);
                    for (int i = from; i <= from + _r.Range(4, 7); i++)
                        S(_r.Chance(60) ? $"{Cap(Num(i))} times {Num(t)} is {Num(i * t)}." : $"{D(i)} x {D(t)} = {D(i * t)}.");
                    break;
                }
                case 3:
                {
                    int step = _r.Pick([1, 1, 2, 5, 10]);
                    int from = step == 1 ? _r.Range(1, 30) : step * _r.Range(0, 5);
                    int n = _r.Range(6, 10);
                    var seq = Enumerable.Range(0, n).Select(i => Num(from + i * step)).ToArray();
                    S(step == 1 ? $"Let us count from {Num(from)} to {Num(from + (n - 1) * step)}." : $"Let us count by {Num(step)}s.");
                    S(Cap(string.Join(", ", seq)) + ".");
                    int m = _r.Range(1, 99);
                    S($"The number after {Num(m)} is {Num(m + 1)}, and the number before {Num(m)} is {Num(m - 1)}.");
                    break;
                }
                case 4:
                    for (int i = _r.Range(3, 5); i > 0; i--)
                    {
                        int x = _r.Range(1, 60), y = _r.Range(1, 60);
                        if (x == y) y++;
                        S($"Which is bigger, {Num(x)} or {Num(y)}? {Cap(Num(Math.Max(x, y)))} is bigger than {Num(Math.Min(x, y))}.");
                    }
                    {
                        int h = _r.Range(1, 25);
                        S($"Half of {Num(2 * h)} is {Num(h)}, and double {Num(h)} is {Num(2 * h)}.");
                    }
                    break;
                default:
                {
                    // A word problem: the question asks for the result of the story's own numbers.
                    var p = PickPerson();
                    Begin(p);
                    var fruit = _r.Pick(Lex.FruitItems);
                    int x = _r.Range(2, 9), y = _r.Range(1, 9);
                    if (_r.Chance(50))
                    {
                        S($"{p.Name} has {Count(x, fruit.One, fruit.Many)}. {_friend} gives {p.Him} {Num(y)} more.");
                        S($"Now {p.Name} has {Num(x)} plus {Num(y)}, which makes {Count(x + y, fruit.One, fruit.Many)}.");
                        QA($"How many {fruit.Many} does {p.Name} have now?", $"{Cap(Count(x + y, fruit.One, fruit.Many))}.");
                    }
                    else
                    {
                        x += y;
                        S($"{p.Name} has {Count(x, fruit.One, fruit.Many)}. {Cap(p.He)} gives {Num(y)} to {_friend}.");
                        S($"{Cap(Num(x))} minus {Num(y)} is {Num(x - y)}, so {p.Name} has {Count(x - y, fruit.One, fruit.Many)} left.");
                        QA($"How many {fruit.Many} did {p.Name} give away?", $"{Cap(Num(y))}.");
                    }
                    break;
                }
            }
        }

        private void Siblings()
        {
            // Children: fresh names only, so their ages never contradict a cast member's.
            string a = FreshName(), b = FreshName(a);
            bool aFemale = IsFemale(a), bFemale = IsFemale(b);
            int ageA = _r.Range(2, 16), ageB = _r.Range(2, 16);
            if (ageA == ageB) ageB++;
            string older = ageA > ageB ? a : b, younger = ageA > ageB ? b : a;
            int diff = Math.Abs(ageA - ageB), later = _r.Range(1, 10);

            S($"{a} is {Num(ageA)} years old, and {(aFemale ? "her" : "his")} {(bFemale ? "sister" : "brother")} {b} is {Num(ageB)}.");
            S($"{older} is older than {younger} by {Count(diff, "year", "years")}.");
            S($"In {Count(later, "year", "years")}, {a} will be {Num(ageA + later)} and {b} will be {Num(ageB + later)}.");
            if (_r.Chance(50))
                S($"Together they are {Num(ageA + ageB)} years old.");
            if (_r.Chance(50)) QA($"Who is younger, {a} or {b}?", $"{younger} is younger.");
            else QA($"Who is older, {b} or {a}?", $"{older} is older.");
        }

        // ------------------------------------------------------------ reports, recipes, lists

        private void WeatherReport()
        {
            string town = _r.Pick(Lex.Towns);
            int month = _r.Next(12), date = _r.Range(1, 28), day = _r.Next(7);
            int hi = Lex.MonthTemps[month] + _r.Range(-3, 4), lo = hi - _r.Range(4, 10);
            Sky sky = (Sky)_r.Next(5);
            if (sky == Sky.Snowy && hi > 3) sky = Sky.Cloudy;
            if (sky == Sky.Rainy && hi <= 0) sky = Sky.Snowy; // below freezing it snows instead
            Sky next = (Sky)_r.Next(4);
            string dir = _r.Pick(["north", "south", "east", "west"]);
            int wind = sky == Sky.Windy ? _r.Range(35, 70) : _r.Range(5, 25);

            S($"Weather report for {town}, {Lex.Days[day]}, {Lex.Months[month]} {D(date)}.");
            S(sky switch
            {
                Sky.Sunny => "Today will be sunny, with clear skies from morning to evening.",
                Sky.Cloudy => "Today will be cloudy, but it should stay dry.",
                Sky.Rainy => $"Rain will start in the {_r.Pick(["morning", "afternoon", "evening"])} and continue for several hours.",
                Sky.Windy => "Today will be windy, with a few clouds.",
                _ => "Snow will fall during the day, so the roads may be slippery.",
            });
            S($"The highest temperature will be {Degrees(hi)}, and the lowest will be {Degrees(lo)}.");
            S($"The wind will blow from the {dir} at {D(wind)} kilometers per hour.");
            S(sky switch
            {
                Sky.Rainy => "Take an umbrella if you go out.",
                Sky.Snowy => "Wear warm boots and gloves.",
                Sky.Windy => "Hold on to your hat!",
                Sky.Sunny when hi >= 22 => "Wear a sun hat and drink plenty of water.",
                _ when hi <= 5 => "Wear a warm coat.",
                _ => "It is a good day for a walk.",
            });
            string nextText = next switch
            {
                Sky.Sunny => "sunny and bright",
                Sky.Cloudy => "gray and cloudy",
                Sky.Rainy => hi <= 1 ? "cold, with some snow" : "wet, with showers",
                _ => "windy",
            };
            S($"Tomorrow, {Lex.Days[(day + 1) % 7]}, will be {nextText}.");
            if (_r.Chance(40))
                S($"{Lex.Months[month]} is in {Lex.SeasonOf(month)}.");
        }

        private void Recipe()
        {
            var lines = _r.Pick(Lex.Recipes)(_r);
            string title = lines[0];
            int serves = _r.Range(2, 6);
            L(_r.Chance(50) ? $"How to make {title}." : $"Recipe: {Cap(title)}.");
            L("You will need: " + lines[1] + ".");
            bool words = _r.Chance(50);
            for (int i = 2; i < lines.Length; i++)
                L(words ? $"Step {Num(i - 1)}: {lines[i]}" : $"{D(i - 1)}. {lines[i]}");
            L(_r.Chance(50) ? $"This recipe serves {Num(serves)} people." : $"Enough for {Num(serves)} people.");
        }

        private void Lists()
        {
            var p = PickPerson();
            Begin(p);
            switch (_r.Next(3))
            {
                case 0:
                {
                    var items = _r.Sample(Lex.MarketItems, _r.Range(3, 6));
                    L($"{p.Name}'s shopping list for {_r.Pick(Lex.Days)}:");
                    foreach (var it in items) L("- " + Count(_r.Range(1, 6), it.One, it.Many));
                    L($"There are {Num(items.Length)} things on the list.");
                    break;
                }
                case 1:
                {
                    var todo = _r.Sample(Lex.Chores, _r.Range(3, 6));
                    L($"Things {p.Name} must do today:");
                    for (int i = 0; i < todo.Length; i++) L($"{D(i + 1)}. {Cap(Fill(todo[i]))}.");
                    L($"The first thing on the list is to {Fill(todo[0])}.");
                    break;
                }
                default:
                {
                    var packed = _r.Sample(Lex.PackItems, _r.Range(3, 5));
                    string to = _r.Pick(Lex.Towns);
                    S($"Before the trip to {to}, {p.Name} packed a bag.");
                    S($"In the bag, {p.He} put {Join(packed)}.");
                    S($"That is {Count(packed.Length, "thing", "things")} in all.");
                    QA($"Where was {p.Name} going?", $"To {to}.");
                    break;
                }
            }
        }

        /// <summary>World knowledge that is the same everywhere in the corpus.</summary>
        private void FactsQuiz()
        {
            switch (_r.Next(4))
            {
                case 0:
                {
                    var f = _r.Pick(Lex.AnimalFacts);
                    string a = A(f.Animal);
                    S($"Here are some facts about {f.Plural}.");
                    if (f.Sound != null) S($"{Cap(a)} says \"{f.Sound}\".");
                    S($"{Cap(a)} lives {f.Home} and eats {f.Eats}.");
                    S(f.Legs == 0 ? $"{Cap(a)} has no legs." : $"{Cap(a)} has {Count(f.Legs, "leg", "legs")}.");
                    QA($"How many legs does {a} have?", f.Legs == 0 ? "None." : $"{Cap(Num(f.Legs))}.");
                    break;
                }
                case 1:
                    S("Questions about colors.");
                    foreach (var (thing, color) in _r.Sample(Lex.ThingColors, _r.Range(3, 5)))
                        QA($"What color is {thing}?", $"{Cap(thing)} is {color}.");
                    break;
                case 2:
                    S("Opposites.");
                    foreach (var (x, y) in _r.Sample(Lex.Opposites, _r.Range(3, 6)))
                        S(_r.Chance(50) ? $"The opposite of {x} is {y}." : $"The opposite of {y} is {x}.");
                    break;
                default:
                {
                    var fs = _r.Sample(Lex.AnimalFacts, _r.Range(3, 4));
                    S("A quiz about animals.");
                    foreach (var f in fs)
                    {
                        if (f.Sound != null && _r.Chance(50)) QA($"What does {A(f.Animal)} say?", $"{Cap(A(f.Animal))} says \"{f.Sound}\".");
                        else QA($"Where does {A(f.Animal)} live?", $"{Cap(A(f.Animal))} lives {f.Home}.");
                    }
                    break;
                }
            }
        }

        private void Letter()
        {
            var p = PickPerson();
            Begin(p);
            var past = PickAct(null);
            var next = PickAct(null);
            string weather = _r.Pick(["cold and rainy", "warm and sunny", "windy", "gray but dry", "very hot", "snowy"]);

            L($"Dear {OtherName(p.Name, _friend)},"); // not _friend, who may be named in the activities
            L($"I hope you are well. I am writing to you from {p.Town}, where the weather is {weather} this week.");
            S($"My {p.Pet.Kind} {p.PetName} is fine and still {Fill(_r.Pick(p.Pet.Habits))}.");
            S($"Last {_r.Pick(Lex.Days)}, I {Fill1(Past(past))}.");
            S($"Next week, I will {Fill1(Base(next))}.");
            S($"Work at the {p.Job.Place} is busy, but I like being {A(p.Job.Title)}.");
            S("Please write back soon and tell me all your news.");
            L(_r.Pick(["With love,", "Best wishes,", "Your friend,", "Warm regards,"]));
            L(p.Name);
        }

        private void Calendar()
        {
            int d = _r.Next(7), m = _r.Next(12), k = _r.Range(2, 5);
            S($"Today is {Lex.Days[d]}. Yesterday was {Lex.Days[(d + 6) % 7]}, and tomorrow will be {Lex.Days[(d + 1) % 7]}.");
            S($"In {Num(k)} days, it will be {Lex.Days[(d + k) % 7]}.");
            S($"This month is {Lex.Months[m]}. Last month was {Lex.Months[(m + 11) % 12]}, and next month will be {Lex.Months[(m + 1) % 12]}.");
            S($"{Lex.Months[m]} is in {Lex.SeasonOf(m)}, and {Lex.SeasonOf((m + 3) % 12)} comes after {Lex.SeasonOf(m)}.");
            QA($"What day comes after {Lex.Days[d]}?", $"{Lex.Days[(d + 1) % 7]}.");
        }

        // ------------------------------------------------------------ small helpers

        /// <summary>A random activity; <paramref name="shared"/> excludes ones naming a friend or "his", which
        /// would read wrongly when two people do it together.</summary>
        private Act PickAct(bool? outdoor, bool shared = false)
        {
            while (true)
            {
                var a = _r.Pick(Lex.Acts);
                if (outdoor != null && a.Outdoor != outdoor) continue;
                if (shared && (a.Rest.Contains("{friend}") || a.Rest.Contains("{his}"))) continue;
                return a;
            }
        }

        private static string Third(Act a) => a.Third + " " + a.Rest;
        private static string Past(Act a) => a.Past + " " + a.Rest;
        private static string Base(Act a) => a.Base + " " + a.Rest;

        private static string Where(Place p) => $"{p.SearchPrep} the {p.Name}";
    }

    // ---------------------------------------------------------------- text formatting

    private static string D(int n) => n.ToString(CultureInfo.InvariantCulture);

    private static string Cap(string s) => s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..];

    /// <summary>"a" or "an" by the first letter; the word lists avoid exceptions such as "hour" and "uniform".</summary>
    private static string A(string noun) => ("aeiou".Contains(noun[0]) ? "an " : "a ") + noun;

    private static string Count(int n, string one, string many) => Num(n) + " " + (n == 1 ? one : many);

    private static string Coins(int n) => n == 0 ? "no coins" : Count(n, "coin", "coins");

    /// <summary>"x", "x and y", "x, y, and z".</summary>
    private static string Join(string[] parts) => parts.Length switch
    {
        1 => parts[0],
        2 => parts[0] + " and " + parts[1],
        _ => string.Join(", ", parts[..^1]) + ", and " + parts[^1],
    };

    private static readonly string[] Ones =
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".Split(' ');
    private static readonly string[] Tens = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".Split(' ');

    /// <summary>Cardinal number in English words (British "and" after hundreds).</summary>
    private static string Num(int n)
    {
        if (n < 0) return "minus " + Num(-n);
        if (n < 20) return Ones[n];
        if (n < 100) return Tens[n / 10] + (n % 10 == 0 ? "" : "-" + Ones[n % 10]);
        if (n < 1000) return Ones[n / 100] + " hundred" + (n % 100 == 0 ? "" : " and " + Num(n % 100));
        return Num(n / 1000) + " thousand" + (n % 1000 == 0 ? "" : (n % 1000 < 100 ? " and " : " ") + Num(n % 1000));
    }

    /// <summary>An hour of the day (0-23) as "seven o'clock".</summary>
    private static string Clock(int hour24)
    {
        int h = ((hour24 % 12) + 12) % 12;
        return Num(h == 0 ? 12 : h) + " o'clock";
    }

    /// <summary>Minutes after midnight as "7:05".</summary>
    private static string Digital(int minutes) =>
        D(minutes / 60) + ":" + (minutes % 60).ToString("00", CultureInfo.InvariantCulture);

    private static string Duration(int minutes)
    {
        int h = minutes / 60, m = minutes % 60;
        string hours = h == 0 ? "" : h == 1 ? "one hour" : Num(h) + " hours";
        string mins = m == 0 ? "" : m == 30 && h == 0 ? "half an hour" : Count(m, "minute", "minutes");
        return hours.Length == 0 ? mins : mins.Length == 0 ? hours : hours + " and " + mins;
    }

    private static string Degrees(int t) => t == 1 || t == -1 ? D(t) + " degree" : D(t) + " degrees";

    /// <summary>Preposition for being at a place: "in the park", "at the library".</summary>
    private static string At(Place p) => p.Name is "park" or "square" or "garden" or "forest" ? "in" : "at";

    // ---------------------------------------------------------------- word lists

    /// <summary>Every word list and template of the corpus. Order matters: it fixes the generated text.</summary>
    private static class Lex
    {
        private static string[] W(string words) => words.Split(' ');
        private static string[] Lines(string text) => text.Split('|');

        public static readonly string[] FemaleNames = W(
            "Anna Maria Lucy Emma Sara Nina Clara Rosa Lily Grace Alice Hannah Julia Mia Olivia Ella Sophie Ruth Helen Laura " +
            "Nora Ivy Martha Daisy Holly Jane Kate Amy Beth Eva Iris Molly Paula Tina Vera Zoe Leah Maya Rita Wendy");

        public static readonly string[] MaleNames = W(
            "Ben Tom Sam Leo Max Jack Oscar Henry Peter Paul David Daniel Adam Noah Luke Owen Felix Hugo Ivan Jonas " +
            "Karl Liam Mark Nick Oliver Ray Simon Theo Victor Will Arthur Carl Eric Frank George Hank Jim Ken Leon Miles");

        public static readonly string[] Towns = W(
            "Millbrook Ashford Oakridge Riverton Stonebridge Greenfield Maplewood Fairhaven Westbury Elmstead Brightwater " +
            "Pinecrest Hollowell Kingsley Redcliff Silverlake Thornbury Willowby Coldwell Larkhill Meadowvale Northgate " +
            "Eastwick Southmoor Claymoor Dunmore Foxley Hartfield Ivybridge Lakeside Rosewood Sandford Windmere Harrowgate");

        public static readonly string[] Days = W("Monday Tuesday Wednesday Thursday Friday Saturday Sunday");

        public static readonly string[] Months = W(
            "January February March April May June July August September October November December");

        /// <summary>Typical daytime temperature per month, so reports are plausible for the season.</summary>
        public static readonly int[] MonthTemps = [3, 4, 8, 12, 16, 20, 23, 22, 18, 13, 8, 4];

        public static string SeasonOf(int month) => month switch
        {
            11 or 0 or 1 => "winter",
            2 or 3 or 4 => "spring",
            5 or 6 or 7 => "summer",
            _ => "autumn",
        };

        public static readonly Job[] Jobs =
        [
            new("baker", "bakery", "bakes bread and little cakes"),
            new("teacher", "school", "teaches reading and writing to the children"),
            new("doctor", "clinic", "helps people who feel ill"),
            new("nurse", "hospital", "takes care of the patients"),
            new("farmer", "farm", "feeds the animals and works in the fields"),
            new("painter", "studio", "paints pictures of the hills and the sea"),
            new("librarian", "library", "puts the books back on the shelves"),
            new("cook", "restaurant", "makes soup and fresh salads"),
            new("gardener", "park", "plants flowers and cuts the grass"),
            new("carpenter", "workshop", "builds tables and chairs"),
            new("bus driver", "bus station", "starts the first bus of the day"),
            new("mail carrier", "post office", "sorts the letters and delivers them"),
            new("shopkeeper", "shop", "sells fruit, milk and bread"),
            new("vet", "animal clinic", "looks after sick animals"),
            new("mechanic", "garage", "fixes cars and bicycles"),
            new("tailor", "tailor's shop", "sews shirts and coats"),
            new("musician", "concert hall", "plays the violin"),
            new("pilot", "airport", "flies a small plane"),
            new("engineer", "factory", "checks the big machines"),
            new("beekeeper", "orchard", "looks after the bees"),
            new("potter", "pottery", "makes cups and bowls from clay"),
            new("builder", "building site", "builds new houses"),
            new("firefighter", "fire station", "keeps the town safe from fires"),
            new("scientist", "laboratory", "does experiments with plants"),
            new("florist", "flower shop", "makes bunches of roses and tulips"),
            new("barber", "barber shop", "cuts people's hair"),
            new("pharmacist", "pharmacy", "gives people their medicine"),
            new("fisher", "harbor", "mends the nets and goes out in a boat"),
            new("journalist", "newspaper office", "writes stories for the newspaper"),
            new("waiter", "coffee shop", "serves coffee and cake"),
            new("bank clerk", "bank", "counts money and helps the customers"),
        ];

        public static readonly PetKind[] Pets =
        [
            new("dog", "dog food", "ran away", "walked {pHim} home",
                ["barks at the mail carrier", "wags {pHis} tail all day", "chases a ball in the garden", "sleeps by the front door"]),
            new("cat", "fish", "ran off", "carried {pHim} home",
                ["sleeps in the sun", "watches the birds from the window", "plays with a ball of wool", "purrs on the sofa"]),
            new("rabbit", "carrots", "hopped away through a hole in the fence", "carried {pHim} home",
                ["eats clover in the garden", "hops around the kitchen", "twitches {pHis} nose"]),
            new("parrot", "seeds", "flew out of an open window", "let {pHim} ride home on {his} shoulder",
                ["repeats every new word", "sings in the morning", "whistles at the neighbors"]),
            new("hamster", "sunflower seeds", "escaped from {pHis} cage", "carried {pHim} home in {his} pocket",
                ["runs in a little wheel", "hides seeds in the straw", "sleeps most of the day"]),
            new("tortoise", "lettuce", "wandered slowly out of the garden", "carried {pHim} home",
                ["walks slowly across the grass", "eats dandelions", "hides in {pHis} shell"]),
            new("horse", "hay", "jumped over the fence", "led {pHim} home",
                ["gallops across the field", "neighs at the gate", "eats apples from the tree"]),
            new("goat", "hay", "ran out through the open gate", "led {pHim} home",
                ["climbs on everything", "eats the flowers in the garden", "jumps on the wall"]),
            new("canary", "seeds", "flew out of {pHis} cage", "carried {pHim} home in a little box",
                ["sings all morning", "hops from perch to perch"]),
            new("duck", "grain", "waddled away down the road", "carried {pHim} home",
                ["swims in the pond", "quacks at the cat next door"]),
        ];

        public static readonly string[] PetNames = W(
            "Rex Biscuit Pepper Muffin Shadow Sunny Clover Ginger Pickles Buttons Noodle Peanut Coco Toffee Bramble " +
            "Pebble Socks Mango Olive Ziggy Scout Fudge Dotty Whiskers Patch Bingo Hazel Tango Bubbles Juniper");

        public static readonly string[] PetAdjectives = W(
            "little big old young clever friendly lively sleepy gentle noisy curious lazy shy");

        public static readonly string[] Colors = W("red blue green yellow orange purple pink brown black white gray");

        public static readonly string[] Topics = Lines(
            "the stars|old ships|the ocean|birds|mountains|trains|castles|bees|the moon|volcanoes|whales|clouds|" +
            "old maps|famous bridges|the rainforest|insects|the weather|gardens|rivers|the history of the town");

        public static readonly string[] Flowers = W("tulips roses daisies sunflowers lilies poppies violets");

        public static readonly string[] Breakfasts = Lines(
            "porridge with honey|toast with butter|two boiled eggs|a bowl of cereal|bread and cheese|" +
            "yogurt with berries|pancakes with jam|an apple and some toast|a bowl of oats with milk");

        public static readonly string[] Lunches = Lines(
            "a cheese sandwich|a bowl of tomato soup|a salad with beans|rice with vegetables|a baked potato|" +
            "noodles with peas|a slice of pizza|fish with potatoes|an egg sandwich|a bowl of lentil soup");

        public static readonly string[] Dinners = Lines(
            "pasta with tomato sauce|rice with beans|fish and potatoes|vegetable stew|a mushroom omelette|chicken soup|" +
            "potato salad|baked potatoes with cheese|noodles with vegetables|lentil soup|pancakes|pizza|fish pie|" +
            "bean stew|spinach pie|roast vegetables|carrot soup|cheese pie");

        public static readonly string[] Evenings = Lines(
            "listens to the radio|reads the newspaper|calls {his} mother on the phone|plays cards with {friend}|" +
            "writes in {his} diary|watches the stars from the window|plays with {pet} on the carpet|" +
            "washes the dishes and tidies the kitchen|drinks a cup of warm milk|sits by the fire and reads a book about {topic}");

        public static readonly Act[] Acts = MakeActs(
            "read|reads|read|a book about {topic}|0",
            "write|writes|wrote|a long letter to {friend}|0",
            "play|plays|played|chess with {friend}|0",
            "bake|bakes|baked|{n} cookies with {friend}|0",
            "fix|fixes|fixed|the old clock in the kitchen|0",
            "clean|cleans|cleaned|the whole house|0",
            "listen|listens|listened|to music on the radio|0",
            "sew|sews|sewed|a new button on {his} coat|0",
            "knit|knits|knitted|{acolor} scarf|0",
            "practice|practices|practiced|the piano for an hour|0",
            "do|does|did|a big puzzle with {friend}|0",
            "sort|sorts|sorted|old photos into a box|0",
            "cook|cooks|cooked|a big pot of soup|0",
            "tidy|tidies|tidied|the cupboard under the stairs|0",
            "learn|learns|learned|ten new words in Spanish|0",
            "watch|watches|watched|a film about {topic}|0",
            "paint|paints|painted|a picture of {acolor} boat|0",
            "walk|walks|walked|along the river with {friend}|1",
            "ride|rides|rode|{his} bicycle to the {place}|1",
            "plant|plants|planted|{n} {flowers} in the garden|1",
            "go|goes|went|swimming in the lake|1",
            "fly|flies|flew|{acolor} kite on the hill|1",
            "pick|picks|picked|apples in the orchard|1",
            "visit|visits|visited|{friend} on the other side of town|1",
            "paint|paints|painted|the garden fence {color}|1",
            "feed|feeds|fed|the ducks at the pond|1",
            "climb|climbs|climbed|the hill behind the town|1",
            "play|plays|played|football in the park|1",
            "wash|washes|washed|the car in front of the house|1",
            "go|goes|went|fishing at the lake|1",
            "have|has|had|a picnic with {friend} in the park|1",
            "buy|buys|bought|{n} {fruits} at the market|1",
            "take|takes|took|photos of the old bridge|1",
            "collect|collects|collected|colorful leaves in the forest|1",
            "sit|sits|sat|on a bench in the square and watch the people|1");

        public static readonly Act[] Hobbies = MakeActs(
            "play|plays|played|the piano for an hour|0",
            "work|works|worked|in the garden all morning|1",
            "go|goes|went|fishing at the lake|1",
            "play|plays|played|football with {friend}|1",
            "knit|knits|knitted|{acolor} scarf|0",
            "read|reads|read|a book about {topic}|0",
            "bake|bakes|baked|bread for the whole week|0",
            "go|goes|went|for a long walk in the hills|1",
            "take|takes|took|photos of birds by the river|1",
            "sing|sings|sang|with the town choir|0",
            "play|plays|played|the guitar with {friend}|0",
            "ride|rides|rode|{his} bicycle around the lake|1",
            "paint|paints|painted|a picture of the old mill|0");

        private static Act[] MakeActs(params string[] specs) =>
        [
            .. specs.Select(s =>
            {
                var f = s.Split('|');
                return new Act(f[0], f[1], f[2], f[3], f[4] == "1");
            }),
        ];

        public static readonly Place[] Places =
        [
            new("park", "in"), new("market", "around"), new("library", "behind"), new("river", "by"),
            new("bakery", "near"), new("post office", "near"), new("museum", "near"), new("school", "behind"),
            new("station", "near"), new("bridge", "under"), new("square", "in"), new("pond", "by"),
            new("coffee shop", "near"), new("swimming pool", "near"), new("town hall", "near"), new("cinema", "near"),
            new("playground", "in"), new("old church", "behind"),
        ];

        public static readonly Place[] SearchPlaces =
        [
            new("garden", "in"), new("shed", "behind"), new("park", "in"), new("bridge", "under"),
            new("river", "by"), new("market", "around"), new("barn", "in"), new("bakery", "near"),
            new("old oak tree", "under"), new("pond", "by"), new("school", "behind"), new("hedge", "under"),
            new("library", "behind"), new("woodpile", "behind"), new("apple tree", "under"), new("old church", "behind"),
        ];

        public static readonly string[] FoundDoing = Lines(
            "sleeping in the shade|sitting in the sun|hiding behind a flower pot|playing with some children|" +
            "drinking water from a puddle|watching the ducks|eating some fallen leaves|resting in the grass");

        public static readonly string[] TravelActs = Lines(
            "read a newspaper|looked out of the window at the fields|ate a sandwich|talked to an old man about the weather|" +
            "fell asleep for a while|wrote a postcard|counted the cows in the fields|listened to music");

        public static readonly string[] Moods = Lines(
            "I am very well|I am fine|Not bad|I am a little tired|Very well indeed|I am happy today");

        public static readonly string[] Events = Lines(
            "film|concert|football match|play|puppet show|school fair|magic show|dance");

        public static readonly string[] Streets = Lines(
            "the main street|Long Lane|River Road|Market Street|Church Street|Mill Road|Station Road|Oak Avenue|Bridge Street");

        public static readonly int[] Notes = [5, 10, 20, 50, 100];

        public static readonly Item[] FruitItems =
        [
            new("apple", "apples", 2), new("pear", "pears", 2), new("plum", "plums", 1), new("peach", "peaches", 3),
            new("orange", "oranges", 2), new("lemon", "lemons", 1), new("banana", "bananas", 1), new("cherry", "cherries", 1),
        ];

        public static readonly Item[] MarketItems =
        [
            new("apple", "apples", 2), new("pear", "pears", 2), new("loaf of bread", "loaves of bread", 4),
            new("bottle of milk", "bottles of milk", 3), new("egg", "eggs", 1), new("jar of honey", "jars of honey", 7),
            new("lemon", "lemons", 1), new("cabbage", "cabbages", 3), new("bag of rice", "bags of rice", 5),
            new("piece of cheese", "pieces of cheese", 6), new("melon", "melons", 5), new("box of tea", "boxes of tea", 4),
            new("bag of potatoes", "bags of potatoes", 4), new("orange", "oranges", 2), new("tomato", "tomatoes", 1),
        ];

        public static readonly string[] Chores = Lines(
            "water the plants|feed {pet}|buy bread and milk|post a letter to {friend}|clean the windows|call {friend}|" +
            "fix the kitchen tap|wash the dishes|pick up {his} coat from the tailor|pay the water bill|sweep the floor|" +
            "return two books to the library|make a cake for {friend}");

        public static readonly string[] PackItems = Lines(
            "a towel|a warm sweater|a book|a bottle of water|a toothbrush|a map|a camera|a small umbrella|a sandwich|" +
            "a pair of boots|a notebook|a torch|a sun hat|a jacket|a pencil case");

        public static readonly Fact[] AnimalFacts =
        [
            new("cow", "cows", "moo", "on a farm", "grass", 4),
            new("sheep", "sheep", "baa", "in a field", "grass", 4),
            new("pig", "pigs", "oink", "on a farm", "vegetables and grain", 4),
            new("hen", "hens", "cluck", "in a hen house", "seeds and worms", 2),
            new("duck", "ducks", "quack", "on a pond", "small plants and insects", 2),
            new("horse", "horses", "neigh", "in a stable", "hay and oats", 4),
            new("owl", "owls", "hoot", "in a hollow tree", "mice", 2),
            new("frog", "frogs", "croak", "near a pond", "flies", 4),
            new("bee", "bees", "buzz", "in a hive", "nectar from flowers", 6),
            new("spider", "spiders", null, "in a web", "flies", 8),
            new("mouse", "mice", "squeak", "in a small hole", "seeds", 4),
            new("snake", "snakes", "hiss", "under rocks", "mice and eggs", 0),
            new("bear", "bears", "growl", "in a forest", "berries and fish", 4),
            new("fish", "fish", null, "in the water", "tiny plants", 0),
            new("dog", "dogs", "woof", "in a house with people", "meat and biscuits", 4),
            new("cat", "cats", "meow", "in a house with people", "fish and meat", 4),
            new("ant", "ants", null, "in a nest under the ground", "seeds and crumbs", 6),
            new("crab", "crabs", null, "on the beach", "small fish", 10),
            new("lion", "lions", "roar", "on the grassland", "meat", 4),
            new("goat", "goats", "baa", "on a farm", "grass and leaves", 4),
        ];

        public static readonly (string Thing, string Color)[] ThingColors =
        [
            ("a banana", "yellow"), ("a lemon", "yellow"), ("a strawberry", "red"), ("a tomato", "red"),
            ("a cherry", "red"), ("a carrot", "orange"), ("an orange", "orange"), ("a pumpkin", "orange"),
            ("grass", "green"), ("a cucumber", "green"), ("a frog", "green"), ("the sky on a clear day", "blue"),
            ("the sea", "blue"), ("snow", "white"), ("milk", "white"), ("coal", "black"), ("a crow", "black"),
            ("chocolate", "brown"), ("a plum", "purple"), ("a polar bear", "white"), ("a fire engine", "red"),
            ("a pea", "green"), ("an elephant", "gray"), ("a mouse", "gray"),
        ];

        public static readonly (string, string)[] Opposites =
        [
            ("hot", "cold"), ("big", "small"), ("tall", "short"), ("fast", "slow"), ("up", "down"), ("day", "night"),
            ("happy", "sad"), ("wet", "dry"), ("light", "dark"), ("full", "empty"), ("open", "closed"), ("early", "late"),
            ("young", "old"), ("loud", "quiet"), ("hard", "soft"), ("near", "far"), ("thick", "thin"), ("strong", "weak"),
            ("clean", "dirty"), ("first", "last"), ("left", "right"), ("summer", "winter"),
        ];

        /// <summary>Each recipe returns: title, ingredient list, then the steps. Quantities in the steps match the list.</summary>
        public static readonly Func<Rng, string[]>[] Recipes =
        [
            r =>
            {
                int c = r.Range(2, 4), p = r.Range(2, 4), w = r.Range(3, 6), t = r.Range(4, 8) * 5;
                return
                [
                    "vegetable soup",
                    Join([Count(c, "carrot", "carrots"), Count(p, "potato", "potatoes"), "one onion", Count(w, "cup of water", "cups of water"), "a pinch of salt"]),
                    "Wash and peel the carrots and the potatoes.",
                    "Cut the vegetables into small pieces.",
                    "Chop the onion and fry it in a little oil for five minutes.",
                    $"Add the carrots, the potatoes and the {Num(w)} cups of water.",
                    $"Cook the soup for {Num(t)} minutes, until the vegetables are soft.",
                    "Add the salt and serve the soup hot.",
                ];
            },
            r =>
            {
                int e = r.Range(1, 3), f = r.Range(1, 2), m = r.Range(1, 2), t = r.Range(1, 3);
                return
                [
                    "pancakes",
                    Join([Count(e, "egg", "eggs"), Count(f, "cup of flour", "cups of flour"), Count(m, "cup of milk", "cups of milk"), "a spoon of sugar", "a little butter"]),
                    "Put the flour and the sugar in a big bowl.",
                    $"Add the {(e == 1 ? "egg" : "eggs")} and the milk, and stir until the batter is smooth.",
                    "Melt a little butter in a hot pan.",
                    $"Pour some batter into the pan and cook it for {Count(t, "minute", "minutes")} on each side.",
                    $"Serve the pancakes with {r.Pick(new[] { "honey", "jam", "fresh berries", "lemon and sugar" })}.",
                ];
            },
            r =>
            {
                var fruits = r.Sample(FruitItems[..5], 3);
                int t = r.Range(2, 6) * 10;
                return
                [
                    "fruit salad",
                    Join([.. fruits.Select(x => Count(r.Range(2, 4), x.One, x.Many)), "one lemon", "a spoon of honey"]),
                    $"Wash the {fruits[0].Many}, the {fruits[1].Many} and the {fruits[2].Many}.",
                    "Cut all the fruit into small pieces and put them in a big bowl.",
                    "Squeeze the juice of the lemon over the fruit.",
                    "Add the honey and mix everything gently.",
                    $"Keep the salad cold for {Num(t)} minutes before you eat it.",
                ];
            },
            r =>
            {
                int l = r.Range(3, 6), s = r.Range(2, 5), w = r.Range(1, 2);
                return
                [
                    "lemonade",
                    Join([Count(l, "lemon", "lemons"), Count(s, "spoon of sugar", "spoons of sugar"), Count(w, "liter of cold water", "liters of cold water"), "some ice"]),
                    $"Squeeze the juice out of the {Num(l)} lemons.",
                    "Pour the juice into a large jug.",
                    "Add the sugar and the water, and stir well.",
                    "Taste it, and add more sugar if it is too sour.",
                    "Put in the ice and serve the lemonade cold.",
                ];
            },
            r =>
            {
                int e = r.Range(2, 4), t = r.Range(2, 4);
                return
                [
                    "an omelette",
                    Join([Count(e, "egg", "eggs"), "a little milk", "a handful of grated cheese", "some chopped herbs", "salt and pepper"]),
                    $"Break the {Num(e)} eggs into a bowl.",
                    "Add the milk, the salt and the pepper, and beat the eggs with a fork.",
                    "Heat a little butter in a pan.",
                    $"Pour in the eggs and cook them slowly for {Count(t, "minute", "minutes")}.",
                    "Sprinkle the cheese and the herbs on top.",
                    "Fold the omelette in half and serve it at once.",
                ];
            },
            r =>
            {
                int f = r.Range(3, 5), w = r.Range(1, 2), k = r.Range(2, 3) * 5, t = r.Range(6, 9) * 5, temp = r.Range(8, 11) * 20;
                return
                [
                    "bread",
                    Join([Count(f, "cup of flour", "cups of flour"), Count(w, "cup of warm water", "cups of warm water"), "a spoon of yeast", "a spoon of salt"]),
                    "Mix the flour, the yeast and the salt in a large bowl.",
                    "Add the warm water slowly and make a soft dough.",
                    $"Knead the dough for {Num(k)} minutes.",
                    "Cover the bowl and let the dough rise for one hour.",
                    "Shape the dough into a loaf and put it on a baking tray.",
                    $"Bake the bread for {Num(t)} minutes at {D(temp)} degrees.",
                ];
            },
            r =>
            {
                int o = r.Range(1, 2), m = o * 2, t = r.Range(1, 3) * 5;
                return
                [
                    "porridge",
                    Join([Count(o, "cup of oats", "cups of oats"), Count(m, "cup of milk", "cups of milk"), "a spoon of honey", "a handful of berries"]),
                    "Put the oats and the milk in a small pot.",
                    $"Cook them over a low heat for {Num(t)} minutes, and stir all the time.",
                    "When the porridge is thick, take the pot off the heat.",
                    "Put the honey and the berries on top.",
                ];
            },
            r =>
            {
                int g = r.Range(4, 10) * 50, tom = r.Range(4, 8), cl = r.Range(2, 3), t = r.Range(8, 12);
                return
                [
                    "tomato pasta",
                    Join([$"{D(g)} grams of pasta", Count(tom, "tomato", "tomatoes"), Count(cl, "clove of garlic", "cloves of garlic"), "two spoons of oil", "some cheese"]),
                    "Boil a big pot of water with a little salt.",
                    $"Cook the pasta for {Num(t)} minutes.",
                    "While the pasta cooks, chop the tomatoes and the garlic.",
                    "Fry the garlic in the oil, then add the tomatoes.",
                    "Let the sauce cook for ten minutes.",
                    "Mix the pasta with the sauce and put the cheese on top.",
                ];
            },
            r =>
            {
                int b = r.Range(2, 5) * 50, e = r.Range(1, 2), t = r.Range(10, 15), temp = r.Range(8, 9) * 20;
                return
                [
                    "chocolate cookies",
                    Join([$"{D(b)} grams of butter", "one cup of sugar", "two cups of flour", Count(e, "egg", "eggs"), "a bar of chocolate"]),
                    "Beat the butter and the sugar until they are soft.",
                    $"Add the {(e == 1 ? "egg" : "eggs")} and mix well.",
                    "Break the chocolate into small pieces.",
                    "Stir in the flour and the chocolate.",
                    "Put small balls of dough on a baking tray.",
                    $"Bake the cookies for {Num(t)} minutes at {D(temp)} degrees, and let them cool before you eat them.",
                ];
            },
            r =>
            {
                int c = r.Range(1, 2), t = r.Range(3, 4) * 5;
                return
                [
                    "rice with vegetables",
                    Join([Count(c, "cup of rice", "cups of rice"), "a cup of peas", "one carrot", "one onion", "a little oil"]),
                    $"Wash the rice and put it in a pot with {Num(2 * c)} cups of water.",
                    $"Cook the rice for {Num(t)} minutes, until all the water is gone.",
                    "Cut the carrot and the onion into small pieces.",
                    "Fry the carrot and the onion in the oil, then add the peas.",
                    "Mix the vegetables with the rice and serve it warm.",
                ];
            },
        ];
    }
}
